import { useChat } from "./ChatContext";

export function formatDue(date: string): string {
  const d = new Date(`${date}T00:00:00`);
  if (Number.isNaN(d.getTime())) return date;
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" });
}

export function InboxPanel() {
  const { state } = useChat();
  const items = state.inbox;
  return (
    <aside className="inbox" data-testid="inbox-panel" aria-labelledby="inbox-title">
      <h2 id="inbox-title">
        Inbox{" "}
        <span className="count" data-testid="inbox-count" aria-label={`${items.length} items`}>
          {items.length}
        </span>
      </h2>
      {items.length === 0 ? (
        <p className="muted">What you tell the assistant in the brain dump lands here.</p>
      ) : (
        <ul className="inbox-list">
          {items.map((item) => (
            <li key={item.id} className="inbox-item" data-testid="inbox-item" data-id={item.id}>
              <span className="inbox-title">{item.title}</span>
              <span className="inbox-meta">
                {item.due_date && (
                  <time dateTime={item.due_date}>
                    <span className="sr-only">due </span>
                    {formatDue(item.due_date)}
                  </time>
                )}
                {(item.tags ?? []).map((t) => (
                  <span key={t} className="tag">
                    #{t}
                  </span>
                ))}
              </span>
            </li>
          ))}
        </ul>
      )}
    </aside>
  );
}
