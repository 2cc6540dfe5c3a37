// The session endpoints (sign-in), apart from the chat's own adapter.

export interface User {
  user_id: string;
  display_name: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, {
    credentials: "same-origin",
    ...init,
    headers: { accept: "application/json", ...(init?.body ? { "content-type": "application/json" } : {}) },
  });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(res.status, err?.code ?? "http_error", err?.message ?? `The server answered ${res.status}.`);
  }
  return body as T;
}

/** The signed-in user, or null when there is no session. */
export async function getSession(): Promise<User | null> {
  try {
    return await call<User>("/api/session");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

/** Signs in with a display name; the server sets the `floe_session` cookie. */
export function signIn(displayName: string): Promise<User & { token?: string }> {
  return call("/api/session", { method: "POST", body: JSON.stringify({ display_name: displayName }) });
}

/** Starts the person's onboarding (idempotent on the server). */
export function startWorkflow(): Promise<unknown> {
  return call("/api/workflow/start", { method: "POST", body: "{}" });
}
