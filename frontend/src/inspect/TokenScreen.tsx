import { useState, type FormEvent } from "react";
import { ApiError, checkToken, errorMessage } from "./api";

/** Asks for the operator token; checks it against the API before keeping it. */
export function TokenScreen({ notice, onAccepted }: { notice: string | null; onAccepted: (token: string) => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(notice);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const token = value.trim();
    if (!token) {
      setError("Enter the operator token.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await checkToken(token);
      onAccepted(token);
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? `The server refused this token: ${err.message}`
          : `Can't check the token: ${errorMessage(err)}`,
      );
      setBusy(false);
    }
  }

  return (
    <main className="center">
      <form className="signin" onSubmit={submit} aria-labelledby="token-title" noValidate>
        <h1 id="token-title">floe inspector</h1>
        <p className="muted">The workflow inspector is for operators. It uses the API's operator token.</p>
        <label htmlFor="token-input">Operator token</label>
        <input
          id="token-input"
          data-testid="token-input"
          type="password"
          autoComplete="current-password"
          value={value}
          onChange={(e) => setValue(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? "token-error" : undefined}
          autoFocus
        />
        {error && (
          <p id="token-error" className="error" role="alert" data-testid="token-error">
            {error}
          </p>
        )}
        <button type="submit" className="button primary" data-testid="token-submit" disabled={busy}>
          {busy ? "Checking…" : "Open the inspector"}
        </button>
        <p className="muted small">The token is kept in this tab only (session storage).</p>
      </form>
    </main>
  );
}
