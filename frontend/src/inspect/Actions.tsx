// What an operator can do to a workflow: run a query, send a signal, cancel.

import { useState, type FormEvent } from "react";
import { cancelWorkflow, errorMessage, runQuery, sendSignal, type WorkflowDetail } from "./api";
import { parseJsonInput } from "./format";
import { Card, Json } from "./ui";

const QUERIES = ["get_state", "get_progress"];

export function Actions({ workflow, onChanged }: { workflow: WorkflowDetail; onChanged: () => void }) {
  return (
    <Card title="Actions" id="actions">
      <div className="actions-grid">
        <QueryForm id={workflow.id} />
        <SignalForm id={workflow.id} onSent={onChanged} />
        <CancelForm workflow={workflow} onCancelled={onChanged} />
      </div>
    </Card>
  );
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: string } | null;

/** A query's answer is `{"result": …}`; show the result itself. */
function answer(body: unknown): unknown {
  if (body && typeof body === "object" && !Array.isArray(body)) {
    const keys = Object.keys(body);
    if (keys.length === 1 && keys[0] === "result") return (body as { result: unknown }).result;
  }
  return body;
}

function QueryForm({ id }: { id: string }) {
  const [name, setName] = useState("get_state");
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const q = name.trim();
    if (!q) {
      setOutcome({ ok: false, error: "Enter the query's name." });
      return;
    }
    setBusy(true);
    try {
      setOutcome({ ok: true, value: answer(await runQuery(id, q)) });
    } catch (err) {
      setOutcome({ ok: false, error: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="action" onSubmit={submit} aria-labelledby="query-heading">
      <h3 id="query-heading">Query</h3>
      <div className="field">
        <label htmlFor="query-name">Query name</label>
        <input
          id="query-name"
          data-testid="query-name"
          list="query-names"
          value={name}
          autoComplete="off"
          onChange={(e) => setName(e.target.value)}
        />
        <datalist id="query-names">
          {QUERIES.map((q) => (
            <option key={q} value={q} />
          ))}
        </datalist>
      </div>
      <button type="submit" className="button primary" data-testid="query-run" disabled={busy}>
        {busy ? "Running…" : "Run query"}
      </button>
      <div data-testid="query-result" data-ok={outcome ? String(outcome.ok) : undefined} aria-live="polite">
        {outcome?.ok === true && <Json value={outcome.value} label="Query answer" />}
        {outcome?.ok === false && (
          <p className="error" role="alert">
            {outcome.error}
          </p>
        )}
      </div>
    </form>
  );
}

function SignalForm({ id, onSent }: { id: string; onSent: () => void }) {
  const [name, setName] = useState("");
  const [payload, setPayload] = useState("{}");
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [result, setResult] = useState<string | null>(null);
  const check = parseJsonInput(payload);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setResult(null);
    const signal = name.trim();
    if (!signal) {
      setError("Enter the signal's name.");
      return;
    }
    const parsed = parseJsonInput(payload);
    if (!parsed.ok) {
      setError(parsed.error);
      return;
    }
    setError(null);
    setBusy(true);
    try {
      const accepted = await sendSignal(id, signal, parsed.value, key.trim() || undefined);
      setResult(
        accepted.delivered
          ? `Signal ${signal} delivered (inbox seq ${accepted.seq ?? "?"}).`
          : `Signal ${signal} not delivered again: one with this idempotency key was delivered before.`,
      );
      onSent();
    } catch (err) {
      setError(`Signal ${signal} refused: ${errorMessage(err)}`);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="action" onSubmit={submit} aria-labelledby="signal-heading" noValidate>
      <h3 id="signal-heading">Send a signal</h3>
      <div className="field">
        <label htmlFor="signal-name">Signal name</label>
        <input
          id="signal-name"
          data-testid="signal-name"
          value={name}
          autoComplete="off"
          onChange={(e) => {
            setName(e.target.value);
            setError(null);
          }}
        />
      </div>
      <div className="field">
        <label htmlFor="signal-payload">Payload (JSON; empty for null)</label>
        <textarea
          id="signal-payload"
          data-testid="signal-payload"
          className="code"
          rows={5}
          spellCheck={false}
          value={payload}
          aria-invalid={!check.ok}
          aria-describedby="signal-payload-hint"
          onChange={(e) => {
            setPayload(e.target.value);
            setError(null);
          }}
        />
        <span id="signal-payload-hint" className={`small ${check.ok ? "muted" : "error"}`}>
          {check.ok ? "Valid JSON." : "Not valid JSON yet."}
        </span>
      </div>
      <div className="field">
        <label htmlFor="signal-key">Idempotency key (optional)</label>
        <input id="signal-key" data-testid="signal-key" value={key} autoComplete="off" onChange={(e) => setKey(e.target.value)} />
      </div>
      <button type="submit" className="button primary" data-testid="signal-send" disabled={busy}>
        {busy ? "Sending…" : "Send signal"}
      </button>
      {error && (
        <p className="error" role="alert" data-testid="signal-error">
          {error}
        </p>
      )}
      {result && (
        <p className="ok" role="status" data-testid="signal-result">
          {result}
        </p>
      )}
    </form>
  );
}

function CancelForm({ workflow, onCancelled }: { workflow: WorkflowDetail; onCancelled: () => void }) {
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const why = reason.trim();
    if (!why) {
      setOutcome({ ok: false, text: "Give a reason for cancelling." });
      return;
    }
    if (!window.confirm(`Cancel ${workflow.kind} ${workflow.key} (and its open children)?\n\nReason: ${why}`)) return;
    setBusy(true);
    try {
      const accepted = await cancelWorkflow(workflow.id, why);
      setOutcome({
        ok: true,
        text: accepted.delivered
          ? `Cancellation delivered (inbox seq ${accepted.seq ?? "?"}).`
          : "Cancellation was already delivered before.",
      });
      onCancelled();
    } catch (err) {
      setOutcome({ ok: false, text: `Not cancelled: ${errorMessage(err)}` });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="action" onSubmit={submit} aria-labelledby="cancel-heading" noValidate>
      <h3 id="cancel-heading">Cancel</h3>
      <div className="field">
        <label htmlFor="cancel-reason">Reason</label>
        <input
          id="cancel-reason"
          data-testid="cancel-reason"
          value={reason}
          autoComplete="off"
          maxLength={2000}
          onChange={(e) => setReason(e.target.value)}
        />
      </div>
      <button type="submit" className="button danger" data-testid="cancel-button" disabled={busy}>
        {busy ? "Cancelling…" : "Cancel workflow"}
      </button>
      <p className="muted small">Asks for confirmation first.</p>
      {outcome && (
        <p
          className={outcome.ok ? "ok" : "error"}
          role={outcome.ok ? "status" : "alert"}
          data-testid="cancel-result"
          data-ok={String(outcome.ok)}
        >
          {outcome.text}
        </p>
      )}
    </form>
  );
}
