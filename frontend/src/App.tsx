import { useCallback, useEffect, useState } from "react";
import { getSession, type User } from "./api";
import { SignIn } from "./components/SignIn";
import { ChatScreen } from "./components/ChatScreen";

type Phase =
  | { kind: "loading" }
  | { kind: "signed-out"; notice?: string }
  | { kind: "signed-in"; user: User }
  | { kind: "error"; message: string };

export function App() {
  const [phase, setPhase] = useState<Phase>({ kind: "loading" });

  const restore = useCallback(() => {
    setPhase({ kind: "loading" });
    getSession()
      .then((user) => setPhase(user ? { kind: "signed-in", user } : { kind: "signed-out" }))
      .catch(() => setPhase({ kind: "error", message: "Can't reach the server right now." }));
  }, []);

  useEffect(restore, [restore]);

  switch (phase.kind) {
    case "loading":
      return (
        <main className="center" aria-busy="true">
          <p className="muted" role="status">
            Loading…
          </p>
        </main>
      );
    case "error":
      return (
        <main className="center">
          <p role="alert">{phase.message}</p>
          <button type="button" className="button" onClick={restore}>
            Try again
          </button>
        </main>
      );
    case "signed-out":
      return <SignIn notice={phase.notice} onSignedIn={(user) => setPhase({ kind: "signed-in", user })} />;
    case "signed-in":
      return (
        <ChatScreen
          key={phase.user.user_id}
          user={phase.user}
          onSignedOut={() => setPhase({ kind: "signed-out", notice: "Your session has ended. Please sign in again." })}
        />
      );
  }
}
