import { useState, type FormEvent } from "react";
import { ApiError, signIn, type User } from "../api";

export function SignIn({ onSignedIn, notice }: { onSignedIn: (user: User) => void; notice?: string }) {
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const displayName = name.trim();
    if (!displayName) {
      setError("Please enter a name.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const user = await signIn(displayName);
      onSignedIn({ user_id: user.user_id, display_name: user.display_name });
    } catch (err) {
      setError(err instanceof ApiError ? err.message : "Can't reach the server right now. Please try again.");
      setBusy(false);
    }
  };

  return (
    <main className="center">
      <form className="signin" data-testid="signin-form" onSubmit={submit} aria-labelledby="signin-title" noValidate>
        <h1 id="signin-title">Welcome to floe</h1>
        <p className="muted">A short chat to get you set up: who you are, what you're working on, and what's on your mind.</p>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        <label htmlFor="display-name">What should we call you?</label>
        <input
          id="display-name"
          data-testid="signin-input"
          name="display_name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          maxLength={80}
          autoComplete="nickname"
          autoFocus
          required
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? "signin-error" : undefined}
        />
        <button type="submit" className="button primary" data-testid="signin-button" disabled={busy}>
          {busy ? "Starting…" : "Start chatting"}
        </button>
        {error && (
          <p id="signin-error" className="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
