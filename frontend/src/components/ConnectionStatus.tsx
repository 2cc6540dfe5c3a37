import type { ConnectionState } from "../chat/connection";
import { useChat } from "./ChatContext";

const LABELS: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  polling: "Connected (polling)",
  offline: "Offline",
};

export function ConnectionStatus() {
  const { state } = useChat();
  const c = state.connection;
  return (
    <span className={`conn conn-${c}`} data-testid="connection-state" data-state={c} role="status" aria-live="polite">
      <span className="dot" aria-hidden="true" />
      {LABELS[c]}
      {state.queued > 0 && c !== "connected" && (
        <span className="queued">
          {" "}
          · {state.queued} {state.queued === 1 ? "message" : "messages"} waiting
        </span>
      )}
    </span>
  );
}
