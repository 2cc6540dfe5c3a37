// A workflow's activities, with their jobs: attempts, the last error, when
// the next retry runs, and a Retry button for dead or retrying jobs.

import { useState } from "react";
import { errorMessage, retryJob, type Activity } from "./api";
import { Card, Json, LoadError, Loading, StatusBadge, When, type Resource } from "./ui";

const RETRYABLE = new Set(["dead", "retrying"]);

export function Activities({ resource }: { resource: Resource<Activity[]> }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);
  const items = resource.data ?? [];

  async function retry(jobId: string) {
    setBusy(jobId);
    setMessage(null);
    try {
      await retryJob(jobId);
      setMessage({ text: `Job ${jobId} is available again and will run shortly.`, error: false });
      resource.reload();
    } catch (e) {
      setMessage({ text: `Job ${jobId} was not retried: ${errorMessage(e)}`, error: true });
    } finally {
      setBusy(null);
    }
  }

  return (
    <Card title={`Activities (${items.length})`} id="activities">
      <LoadError error={resource.error} what="the activities" />
      {message && (
        <p className={message.error ? "error" : "ok"} role="status" data-testid="job-retry-result">
          {message.text}
        </p>
      )}
      {resource.loading && !resource.data ? (
        <Loading what="activities" />
      ) : items.length === 0 ? (
        resource.data && <p className="muted">No activities.</p>
      ) : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Activities">
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last error</th>
                <th scope="col">Job</th>
                <th scope="col">Next retry</th>
                <th scope="col">Started</th>
                <th scope="col">Finished</th>
                <th scope="col">Input and result</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((a) => {
                const job = a.job;
                const jobId = job ? String(job.id) : "";
                const lastError = job?.last_error ?? a.error;
                return (
                  <tr key={a.activity_id} data-testid="activity-row" data-name={a.name} data-status={a.status}>
                    <td>
                      <span className="key">{a.name}</span>
                      <div className="muted small mono">{a.activity_id}</div>
                    </td>
                    <td>
                      <StatusBadge status={a.status} />
                    </td>
                    <td className="num">
                      {a.attempts}
                      {job ? <span className="muted"> / {job.max_attempts}</span> : null}
                    </td>
                    <td className="wrap">{lastError ? <span className="error-text">{lastError}</span> : <span className="muted">–</span>}</td>
                    <td>
                      {job ? (
                        <>
                          <StatusBadge status={job.state} /> <span className="muted small">#{jobId}</span>
                          {job.lease_owner && <div className="muted small">leased by {job.lease_owner}</div>}
                        </>
                      ) : (
                        <span className="muted">none</span>
                      )}
                    </td>
                    <td>{job && (job.state === "retrying" || job.state === "scheduled") ? <When t={job.run_at} /> : <span className="muted">–</span>}</td>
                    <td>
                      <When t={a.created_at} />
                    </td>
                    <td>
                      <When t={a.finished_at} />
                    </td>
                    <td>
                      <details>
                        <summary>show</summary>
                        <h4>Input</h4>
                        <Json value={a.input} />
                        <h4>Result</h4>
                        <Json value={a.result} />
                      </details>
                    </td>
                    <td>
                      {job && RETRYABLE.has(job.state) && (
                        <button
                          type="button"
                          className="button small-button"
                          data-testid="job-retry"
                          data-job={jobId}
                          disabled={busy === jobId}
                          onClick={() => retry(jobId)}
                        >
                          {busy === jobId ? "Retrying…" : "Retry"}
                          <span className="sr-only"> job {jobId} ({a.name})</span>
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </Card>
  );
}
