// One workflow: what it is, its data, its history (live over SSE), its
// activities and LLM calls, and the operator's actions on it.

import { useCallback, useEffect, useRef, useState } from "react";
import {
  ApiError,
  errorMessage,
  getActivities,
  getHistory,
  getLlmCalls,
  getWorkflow,
  isAbort,
  openEvents,
  type HistoryItem,
  type WorkflowDetail,
} from "./api";
import { Actions } from "./Actions";
import { Activities } from "./Activities";
import { History } from "./History";
import { historyFromEvent, mergeHistory } from "./history";
import { follow, type LiveState } from "./live";
import { LlmCalls } from "./LlmCalls";
import { followLink, workflowPath } from "./route";
import { absolute, relative } from "./time";
import { Card, Json, LoadError, Loading, StatusBadge, useNow, useResource, When } from "./ui";

/** Activities and LLM calls are also re-read this often (job states change without history events). */
const SIDE_POLL_MS = 5000;
/** Events that arrive together cause one refetch. */
const REFETCH_DELAY_MS = 150;

export function WorkflowPage({ id }: { id: string }) {
  const workflow = useResource((signal) => getWorkflow(id, signal), [id]);
  const activities = useResource((signal) => getActivities(id, signal), [id], SIDE_POLL_MS);
  const llm = useResource((signal) => getLlmCalls(id, signal), [id], SIDE_POLL_MS);
  const { history, historyError, live, liveDetail } = useLiveHistory(id, () => {
    workflow.reload();
    activities.reload();
    llm.reload();
  });

  const wf = workflow.data;
  useEffect(() => {
    document.title = wf ? `${wf.kind} ${wf.key} — floe inspector` : "Workflow — floe inspector";
  }, [wf]);

  if (!wf) {
    return (
      <div className="stack">
        <h1 className="page-title">Workflow</h1>
        {workflow.error ? <LoadError error={workflow.error} what={`workflow ${id}`} /> : <Loading what="the workflow" />}
      </div>
    );
  }

  return (
    <div className="stack">
      <header className="wf-head">
        <h1 className="page-title">
          <span className="muted">{wf.kind}</span> {wf.key}
        </h1>
        <LiveIndicator state={live} detail={liveDetail} />
      </header>
      {workflow.error && (
        <p className="error small" role="status">
          Showing what was last read: {workflow.error}
        </p>
      )}
      <Summary wf={wf} />
      <nav className="jump" aria-label="Sections">
        <a href="#data">Data</a>
        <a href="#history">History</a>
        <a href="#activities">Activities</a>
        <a href="#llm">LLM calls</a>
        <a href="#actions">Actions</a>
      </nav>
      <Card title="Data" id="data">
        <div className="data-grid">
          <div>
            <h3>Context</h3>
            <Json value={wf.context} testId="wf-context" label="Context" />
          </div>
          <div>
            <h3>Input</h3>
            <Json value={wf.input} testId="wf-input" label="Input" />
          </div>
          {wf.output !== null && wf.output !== undefined && (
            <div>
              <h3>Output</h3>
              <Json value={wf.output} testId="wf-output" label="Output" />
            </div>
          )}
          {wf.error && (
            <div>
              <h3>Error</h3>
              <pre className="json error-text" data-testid="wf-error">
                {wf.error}
              </pre>
            </div>
          )}
        </div>
      </Card>
      <History items={history} error={historyError} />
      <Activities resource={activities} />
      <LlmCalls resource={llm} />
      <Actions workflow={wf} onChanged={() => workflow.reload()} />
    </div>
  );
}

function Summary({ wf }: { wf: WorkflowDetail }) {
  const now = useNow();
  return (
    <section className="card" aria-label="Summary">
      <dl className="facts">
        <div>
          <dt>Kind</dt>
          <dd data-testid="wf-kind">{wf.kind}</dd>
        </div>
        <div>
          <dt>Key</dt>
          <dd data-testid="wf-key" className="key">
            {wf.key}
          </dd>
        </div>
        <div>
          <dt>State</dt>
          <dd data-testid="wf-state">{wf.state}</dd>
        </div>
        <div>
          <dt>Status</dt>
          <dd>
            <StatusBadge status={wf.status} testId="wf-status" />
          </dd>
        </div>
        <div>
          <dt>Deadline</dt>
          <dd data-testid="wf-deadline" title={wf.deadline ? absolute(wf.deadline) : undefined}>
            {wf.deadline ? (
              <>
                <time dateTime={wf.deadline}>{relative(wf.deadline, now)}</time>{" "}
                <span className="muted small">({absolute(wf.deadline)})</span>
                {wf.deadline_reason && <span className="muted small"> · {wf.deadline_reason}</span>}
              </>
            ) : (
              <span className="muted">none</span>
            )}
          </dd>
        </div>
        <div>
          <dt>Id</dt>
          <dd className="mono small">{wf.id}</dd>
        </div>
        <div>
          <dt>Version</dt>
          <dd>
            {wf.version} transitions · definition v{wf.definition_version}
          </dd>
        </div>
        <div>
          <dt>Inbox</dt>
          <dd>
            applied {wf.applied_seq} of {wf.next_seq} · {wf.in_flight} in flight
          </dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>
            <When t={wf.created_at} />
          </dd>
        </div>
        <div>
          <dt>Updated</dt>
          <dd>
            <When t={wf.updated_at} />
          </dd>
        </div>
        <div>
          <dt>Parent</dt>
          <dd>
            {wf.parent_id ? (
              <a href={workflowPath(wf.parent_id)} onClick={(e) => followLink(e, workflowPath(wf.parent_id!))} data-testid="wf-parent" className="mono small">
                {wf.parent_id}
              </a>
            ) : (
              <span className="muted">none</span>
            )}
          </dd>
        </div>
        <div>
          <dt>Children</dt>
          <dd>
            {wf.children.length === 0 ? (
              <span className="muted">none</span>
            ) : (
              <ul className="links">
                {wf.children.map((c) => (
                  <li key={c}>
                    <a href={workflowPath(c)} onClick={(e) => followLink(e, workflowPath(c))} data-testid="wf-child" className="mono small">
                      {c}
                    </a>
                  </li>
                ))}
              </ul>
            )}
          </dd>
        </div>
      </dl>
    </section>
  );
}

const LIVE_TEXT: Record<LiveState, string> = {
  connecting: "Connecting…",
  connected: "Live",
  reconnecting: "Reconnecting…",
  ended: "Finished — no more events",
  failed: "Live updates stopped",
};

function LiveIndicator({ state, detail }: { state: LiveState; detail: string | null }) {
  const cls = state === "connected" || state === "ended" ? "conn-connected" : state === "failed" ? "conn-offline" : "conn-reconnecting";
  return (
    <span className={`conn ${cls}`} data-testid="live-indicator" data-state={state} role="status" title={detail ?? undefined}>
      <span className="dot" aria-hidden="true" />
      {LIVE_TEXT[state]}
      {state === "failed" && detail ? `: ${detail}` : ""}
    </span>
  );
}

/**
 * The history: read once, then followed over SSE from the last entry. Every
 * event (and the end) calls `onChange` (debounced), which refetches what the
 * event may have changed.
 */
function useLiveHistory(id: string, onChange: () => void) {
  const [history, setHistory] = useState<HistoryItem[]>([]);
  const [historyError, setHistoryError] = useState<string | null>(null);
  const [live, setLive] = useState<LiveState>("connecting");
  const [liveDetail, setLiveDetail] = useState<string | null>(null);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;

  const changed = useDebounced(() => onChangeRef.current(), REFETCH_DELAY_MS);

  useEffect(() => {
    const controller = new AbortController();
    let stop = () => {};
    getHistory(id, controller.signal)
      .then((items) => {
        if (controller.signal.aborted) return;
        setHistory(items);
        setHistoryError(null);
        const last = items.length > 0 ? String(items[items.length - 1].seq) : null;
        stop = follow({
          open: (lastEventId, signal) => openEvents(id, lastEventId, signal),
          lastEventId: last,
          isFatal: (e) => e instanceof ApiError && (e.status === 400 || e.status === 401 || e.status === 404),
          onState: (state, detail) => {
            setLive(state);
            setLiveDetail(detail ?? null);
          },
          onEvent: (event) => {
            if (event.type !== "end") {
              const item = historyFromEvent(event.data);
              if (item) setHistory((h) => mergeHistory(h, [item]));
            }
            changed();
          },
        });
      })
      .catch((e) => {
        if (controller.signal.aborted || isAbort(e)) return;
        setHistoryError(errorMessage(e));
        setLive("failed");
        setLiveDetail(errorMessage(e));
      });
    return () => {
      controller.abort();
      stop();
    };
  }, [id, changed]);

  return { history, historyError, live, liveDetail };
}

/** A stable function that runs `fn` once, `ms` after its last call. */
function useDebounced(fn: () => void, ms: number): () => void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => fnRef.current(), ms);
  }, [ms]);
}
