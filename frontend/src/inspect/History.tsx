// A workflow's history twice over: a timeline of state changes, and a table
// of every event with a filter by event type.

import { useMemo, useState } from "react";
import type { HistoryItem } from "./api";
import { eventKinds } from "./history";
import { preview } from "./format";
import { Card, Json, LoadError, StatusBadge, When } from "./ui";

export function History({ items, error }: { items: HistoryItem[]; error: string | null }) {
  const [kind, setKind] = useState("");
  const kinds = useMemo(() => eventKinds(items), [items]);
  const shown = kind ? items.filter((i) => i.event === kind) : items;

  return (
    <Card title={`History (${items.length})`} id="history">
      <LoadError error={error} what="the history" />
      <h3>Timeline</h3>
      {items.length === 0 ? (
        <p className="muted" data-testid="history-timeline">
          No events yet.
        </p>
      ) : (
        <ol className="timeline" data-testid="history-timeline">
          {items.map((item) => (
            <li key={item.seq} className={`tl-item tl-${item.event}${item.note ? " tl-noted" : ""}`} data-seq={item.seq}>
              <div className="tl-line">
                <span className="tl-seq">#{item.seq}</span>
                <span className="tl-event">
                  {item.event}
                  {item.name ? <span className="muted"> {item.name}</span> : null}
                </span>
                <span className="muted small">
                  <When t={item.created_at} />
                </span>
              </div>
              <div className="tl-change">
                {item.state_before === item.state_after ? (
                  <span>{item.state_after}</span>
                ) : (
                  <span>
                    <span className="muted">{item.state_before ?? "(start)"}</span> → <strong>{item.state_after}</strong>
                  </span>
                )}{" "}
                <StatusBadge status={item.status_after} />
              </div>
              {item.note && (
                <p className="note">
                  <strong>Note:</strong> {item.note}
                </p>
              )}
            </li>
          ))}
        </ol>
      )}

      <div className="card-head subhead">
        <h3 id="history-table-heading">Events</h3>
        <div className="field inline">
          <label htmlFor="history-filter">Event type</label>
          <select id="history-filter" data-testid="history-filter" value={kind} onChange={(e) => setKind(e.target.value)}>
            <option value="">all ({items.length})</option>
            {kinds.map((k) => (
              <option key={k} value={k}>
                {k} ({items.filter((i) => i.event === k).length})
              </option>
            ))}
          </select>
        </div>
      </div>
      <div className="table-wrap" tabIndex={0} role="region" aria-labelledby="history-table-heading">
        <table className="table" data-testid="history-table">
          <thead>
            <tr>
              <th scope="col">Seq</th>
              <th scope="col">When</th>
              <th scope="col">Event</th>
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col">Status after</th>
              <th scope="col">Note</th>
              <th scope="col">Payload and commands</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((item) => (
              <tr
                key={item.seq}
                data-testid="history-row"
                data-seq={item.seq}
                data-event={item.event}
                data-name={item.name ?? ""}
                className={item.note ? "noted" : undefined}
              >
                <td className="num">{item.seq}</td>
                <td>
                  <When t={item.created_at} />
                </td>
                <td>{item.event}</td>
                <td>{item.name ?? <span className="muted">–</span>}</td>
                <td className="nowrap">
                  {item.state_before ?? "(start)"} → {item.state_after}
                </td>
                <td>
                  <StatusBadge status={item.status_after} />
                </td>
                <td>{item.note ? <span className="note-inline">{item.note}</span> : <span className="muted">–</span>}</td>
                <td>
                  <details>
                    <summary>{preview(item.payload, 40)}</summary>
                    <h4>Payload</h4>
                    <Json value={item.payload} />
                    <h4>Commands</h4>
                    <Json value={item.commands} />
                  </details>
                </td>
              </tr>
            ))}
            {shown.length === 0 && (
              <tr>
                <td colSpan={8} className="muted">
                  No {kind || ""} events.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </Card>
  );
}
