// The LLM calls a workflow's activities made, with their totals.

import type { LlmCalls as Calls } from "./api";
import { count, millis, usd } from "./format";
import { Card, LoadError, Loading, StatusBadge, When, type Resource } from "./ui";

export function LlmCalls({ resource }: { resource: Resource<Calls> }) {
  const items = resource.data?.items ?? [];
  const total = resource.data?.total;
  return (
    <Card title={`LLM calls (${total?.calls ?? items.length})`} id="llm">
      <LoadError error={resource.error} what="the LLM calls" />
      {resource.loading && !resource.data ? (
        <Loading what="LLM calls" />
      ) : !resource.data ? null : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="LLM calls">
          <table className="table">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Agent</th>
                <th scope="col">Step</th>
                <th scope="col">Model</th>
                <th scope="col">Status</th>
                <th scope="col" className="num">
                  Tokens in
                </th>
                <th scope="col" className="num">
                  Tokens out
                </th>
                <th scope="col" className="num">
                  Latency
                </th>
                <th scope="col" className="num">
                  Cost
                </th>
                <th scope="col">Error</th>
              </tr>
            </thead>
            <tbody>
              {items.map((c) => (
                <tr key={String(c.id)} data-testid="llm-row" data-status={c.status} data-agent={c.agent ?? ""}>
                  <td>
                    <When t={c.created_at} />
                  </td>
                  <td>{c.agent ?? "–"}</td>
                  <td>
                    {c.step ?? "–"}
                    {c.attempt !== null && c.attempt !== undefined && <span className="muted small"> · attempt {c.attempt}</span>}
                  </td>
                  <td className="mono small">{c.model ?? "–"}</td>
                  <td>
                    <StatusBadge status={c.status} />
                    {c.http_status !== null && c.http_status !== undefined && <span className="muted small"> HTTP {c.http_status}</span>}
                  </td>
                  <td className="num">{count(c.tokens_in)}</td>
                  <td className="num">{count(c.tokens_out)}</td>
                  <td className="num">{millis(c.latency_ms)}</td>
                  <td className="num">{usd(c.cost_usd)}</td>
                  <td className="wrap">{c.error ? <span className="error-text">{c.error}</span> : <span className="muted">–</span>}</td>
                </tr>
              ))}
              {items.length === 0 && (
                <tr>
                  <td colSpan={10} className="muted">
                    No LLM calls.
                  </td>
                </tr>
              )}
            </tbody>
            {total && (
              <tfoot>
                <tr data-testid="llm-total">
                  <th scope="row" colSpan={5}>
                    Total: {count(total.calls)} calls
                  </th>
                  <td className="num">{count(total.tokens_in)}</td>
                  <td className="num">{count(total.tokens_out)}</td>
                  <td />
                  <td className="num">{usd(total.cost_usd)}</td>
                  <td />
                </tr>
              </tfoot>
            )}
          </table>
        </div>
      )}
    </Card>
  );
}
