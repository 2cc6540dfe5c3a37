// The inspector: the token screen until a token is accepted, then the pages
// under /inspect. A 401 from any call comes back here and asks again.

import { useEffect, useState, type ReactNode } from "react";
import { currentToken, forgetToken, onUnauthorized, saveToken } from "./api";
import { Dashboard } from "./Dashboard";
import { DASHBOARD_PATH, followLink, listPath, parseRoute, useLocation } from "./route";
import { TokenScreen } from "./TokenScreen";
import { WorkflowList } from "./WorkflowList";
import { WorkflowPage } from "./WorkflowPage";

export function App() {
  const [token, setToken] = useState<string | null>(currentToken);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => {
    onUnauthorized((message) => {
      setNotice(`The server refused the saved token (${message}). Enter the operator token again.`);
      setToken(null);
    });
    return () => onUnauthorized(null);
  }, []);

  if (!token) {
    return (
      <TokenScreen
        key={notice ?? ""}
        notice={notice}
        onAccepted={(t) => {
          saveToken(t);
          setNotice(null);
          setToken(t);
        }}
      />
    );
  }
  return (
    <Shell
      onForget={() => {
        forgetToken();
        setNotice(null);
        setToken(null);
      }}
    />
  );
}

function NavLink({ to, current, testId, children }: { to: string; current: boolean; testId: string; children: ReactNode }) {
  return (
    <a href={to} data-testid={testId} aria-current={current ? "page" : undefined} onClick={(e) => followLink(e, to)}>
      {children}
    </a>
  );
}

function Shell({ onForget }: { onForget: () => void }) {
  const { pathname } = useLocation();
  const route = parseRoute(pathname);

  let page: ReactNode;
  switch (route.page) {
    case "list":
      page = <WorkflowList />;
      break;
    case "workflow":
      page = <WorkflowPage key={route.id} id={route.id} />;
      break;
    case "dashboard":
      page = <Dashboard />;
      break;
    case "not-found":
      page = (
        <div className="card">
          <h1>Not found</h1>
          <p>
            The inspector has no page at <code>{route.path}</code>.{" "}
            <a href={listPath()} onClick={(e) => followLink(e, listPath())}>
              Go to the workflows
            </a>
            .
          </p>
        </div>
      );
      break;
  }

  return (
    <div className="inspect">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar inspect-top">
        <p className="brand">floe inspector</p>
        <nav aria-label="Inspector" className="inspect-nav">
          <NavLink to={listPath()} current={route.page === "list" || route.page === "workflow"} testId="nav-workflows">
            Workflows
          </NavLink>
          <NavLink to={DASHBOARD_PATH} current={route.page === "dashboard"} testId="nav-dashboard">
            Dashboard
          </NavLink>
        </nav>
        <button type="button" className="button small-button" onClick={onForget}>
          Forget token
        </button>
      </header>
      <main id="main" className="inspect-main" tabIndex={-1}>
        {page}
      </main>
    </div>
  );
}
