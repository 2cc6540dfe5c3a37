import { useEffect, useMemo, useState } from "react";
import { AssistantRuntimeProvider } from "@assistant-ui/react";
import { startWorkflow, type User } from "../api";
import { useFloeChat, type StorageLike } from "../chat/connection";
import { ChatContext } from "./ChatContext";
import { ConnectionStatus } from "./ConnectionStatus";
import { InboxPanel } from "./InboxPanel";
import { ProgressBar } from "./ProgressBar";
import { Thread } from "./Thread";

function browserStorage(): StorageLike | null {
  try {
    const s = globalThis.localStorage;
    const probe = "floe.probe";
    s.setItem(probe, "1");
    s.removeItem(probe);
    return s;
  } catch {
    return null;
  }
}

export function ChatScreen({ user, onSignedOut }: { user: User; onSignedOut: () => void }) {
  // Start (or find) the onboarding first, so the socket's snapshot has it;
  // don't wait long for it: the connection copes either way.
  const [ready, setReady] = useState(false);
  useEffect(() => {
    let live = true;
    const go = () => live && setReady(true);
    const timer = setTimeout(go, 3_000);
    startWorkflow()
      .catch(() => undefined)
      .finally(() => {
        clearTimeout(timer);
        go();
      });
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, []);

  const [storage] = useState(browserStorage);
  const chat = useFloeChat({
    enabled: ready,
    storage,
    storageKey: `floe.outbox.${user.user_id}`,
  });
  const { state, send, runtime } = chat;

  useEffect(() => {
    if (state.unauthorized) onSignedOut();
  }, [state.unauthorized, onSignedOut]);

  const ctx = useMemo(() => ({ state, send }), [state, send]);

  return (
    <ChatContext.Provider value={ctx}>
      <AssistantRuntimeProvider runtime={runtime}>
        <div className="app">
          <header className="topbar">
            <h1 className="brand">floe</h1>
            <ConnectionStatus />
            <span className="user" title="Signed in as">
              <span className="sr-only">Signed in as </span>
              {user.display_name}
            </span>
          </header>
          <ProgressBar />
          {state.completed && (
            <div className="banner" data-testid="completed-banner" role="status">
              <strong>You're all set.</strong> Onboarding is complete
              {state.inbox.length > 0
                ? ` and ${state.inbox.length} ${state.inbox.length === 1 ? "item is" : "items are"} in your inbox.`
                : "."}
            </div>
          )}
          {state.notice && (
            <p className="notice" data-testid="chat-notice" role="alert">
              {state.notice}
            </p>
          )}
          <div className="layout">
            <Thread />
            <InboxPanel />
          </div>
        </div>
      </AssistantRuntimeProvider>
    </ChatContext.Provider>
  );
}
