// Every call the inspector makes to floe-api, in one place. All of them send
// the operator token (`Authorization: Bearer …`); a 401 anywhere forgets the
// token and tells the app (`onUnauthorized`), which asks for it again.
// Errors are the API's JSON body `{"error": {"code", "message"}}`, thrown as
// `ApiError` with its message.

import { listQuery, type ListFilters, type Status } from "./filters";

// --- shapes -----------------------------------------------------------------

export type { Status };

export interface WorkflowItem {
  id: string;
  kind: string;
  key: string;
  state: string;
  status: Status;
  deadline: string | null;
  deadline_reason: string | null;
  version: number;
  parent_id: string | null;
  created_at: string;
  updated_at: string;
}

export interface WorkflowPage {
  items: WorkflowItem[];
  next_cursor: string | null;
}

export interface WorkflowDetail extends WorkflowItem {
  context: unknown;
  input: unknown;
  output: unknown;
  error: string | null;
  definition_version: number;
  children: string[];
  in_flight: number;
  next_seq: number;
  applied_seq: number;
}

export interface HistoryItem {
  seq: number;
  event: string;
  name: string | null;
  payload: unknown;
  created_at: string;
  state_before: string | null;
  state_after: string;
  status_after: Status;
  commands: unknown;
  note: string | null;
}

export interface Counts {
  total: number;
  by_status: Record<Status, number>;
  overdue: number;
  waiting_on_person: number;
  kinds: string[];
  states: string[];
}

export type JobState = "scheduled" | "available" | "running" | "retrying" | "dead";

export interface Job {
  id: number | string;
  state: JobState | string;
  attempts: number;
  max_attempts: number;
  run_at: string | null;
  last_error: string | null;
  lease_owner: string | null;
  lease_expires_at: string | null;
}

export interface Activity {
  activity_id: string;
  name: string;
  status: string;
  attempts: number;
  input: unknown;
  result: unknown;
  error: string | null;
  created_at: string;
  finished_at: string | null;
  job: Job | null;
}

export interface LlmCall {
  id: number | string;
  activity_id: string | null;
  attempt: number | null;
  step: string | null;
  agent: string | null;
  model: string | null;
  status: string;
  http_status: number | null;
  tokens_in: number | null;
  tokens_out: number | null;
  latency_ms: number | null;
  cost_usd: number | null;
  error: string | null;
  created_at: string;
}

export interface LlmCalls {
  items: LlmCall[];
  total: { calls: number; tokens_in: number; tokens_out: number; cost_usd: number };
}

export interface Accepted {
  delivered: boolean;
  seq: number | null;
}

export interface Dashboard {
  generated_at: string;
  workflows: { kind: string; state: string; status: Status; count: number }[];
  queue: { queue: string; kind: string; state: string; count: number; oldest_age_seconds: number | null }[];
  throughput: {
    minute: string;
    completed: number;
    failed: number;
    cancelled: number;
    transitions: number;
    activities_failed: number;
  }[];
  llm_spend: { day: string; calls: number; tokens_in: number; tokens_out: number; cost_usd: number }[];
}

// --- the token --------------------------------------------------------------

const TOKEN_KEY = "floe.inspect.token";

function storage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

let token: string | null = storage()?.getItem(TOKEN_KEY) ?? null;

export function currentToken(): string | null {
  return token;
}

export function saveToken(value: string): void {
  token = value;
  storage()?.setItem(TOKEN_KEY, value);
}

export function forgetToken(): void {
  token = null;
  storage()?.removeItem(TOKEN_KEY);
}

let unauthorized: ((message: string) => void) | null = null;

/** Who to tell when the API refuses the token. */
export function onUnauthorized(handler: ((message: string) => void) | null): void {
  unauthorized = handler;
}

// --- requests -----------------------------------------------------------------

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** What to show for any error a call threw. */
export function errorMessage(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof TypeError) return "Can't reach the server.";
  if (e instanceof Error) return e.message;
  return String(e);
}

export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError";
}

interface CallOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** A token to try instead of the saved one; a 401 then only throws. */
  token?: string;
}

async function failure(res: Response, quiet: boolean): Promise<ApiError> {
  const text = await res.text().catch(() => "");
  let err: { code?: string; message?: string } | undefined;
  try {
    err = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
  } catch {
    err = undefined;
  }
  const error = new ApiError(
    res.status,
    err?.code ?? "http_error",
    err?.message ?? `The server answered ${res.status} ${res.statusText}`.trim(),
  );
  if (res.status === 401 && !quiet) {
    forgetToken();
    unauthorized?.(error.message);
  }
  return error;
}

function headers(options: CallOptions, accept: string): Record<string, string> {
  const h: Record<string, string> = { accept, ...options.headers };
  const t = options.token ?? token;
  if (t) h.authorization = `Bearer ${t}`;
  if (options.body !== undefined) h["content-type"] = "application/json";
  return h;
}

async function call<T>(path: string, options: CallOptions = {}): Promise<T> {
  const res = await fetch(path, {
    method: options.method ?? "GET",
    headers: headers(options, "application/json"),
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
    cache: "no-store",
  });
  if (!res.ok) throw await failure(res, options.token !== undefined);
  const text = await res.text();
  return (text ? JSON.parse(text) : null) as T;
}

const enc = encodeURIComponent;

// --- the endpoints ------------------------------------------------------------

/** Checks a token before keeping it (lists one workflow with it). */
export async function checkToken(candidate: string): Promise<void> {
  await call("/api/workflows?limit=1", { token: candidate });
}

export function listWorkflows(
  filters: ListFilters,
  cursor: string | null,
  signal?: AbortSignal,
): Promise<WorkflowPage> {
  return call(`/api/workflows?${listQuery(filters, cursor)}`, { signal });
}

export function getCounts(kind: string, signal?: AbortSignal): Promise<Counts> {
  return call(`/api/inspect/counts${kind ? `?kind=${enc(kind)}` : ""}`, { signal });
}

export function getWorkflow(id: string, signal?: AbortSignal): Promise<WorkflowDetail> {
  return call(`/api/workflows/${enc(id)}`, { signal });
}

/** The whole history (read in pages of 1000). */
export async function getHistory(id: string, signal?: AbortSignal): Promise<HistoryItem[]> {
  const PAGE = 1000;
  const all: HistoryItem[] = [];
  let after = 0;
  for (;;) {
    const page = await call<{ items: HistoryItem[] }>(
      `/api/workflows/${enc(id)}/history?after=${after}&limit=${PAGE}`,
      { signal },
    );
    all.push(...page.items);
    if (page.items.length < PAGE) return all;
    after = page.items[page.items.length - 1].seq;
  }
}

export async function getActivities(id: string, signal?: AbortSignal): Promise<Activity[]> {
  return (await call<{ items: Activity[] }>(`/api/workflows/${enc(id)}/activities`, { signal })).items;
}

export function getLlmCalls(id: string, signal?: AbortSignal): Promise<LlmCalls> {
  return call(`/api/workflows/${enc(id)}/llm-calls`, { signal });
}

export function sendSignal(id: string, name: string, payload: unknown, idempotencyKey?: string): Promise<Accepted> {
  return call(`/api/workflows/${enc(id)}/signals/${enc(name)}`, {
    method: "POST",
    body: payload,
    headers: idempotencyKey ? { "idempotency-key": idempotencyKey } : undefined,
  });
}

export function cancelWorkflow(id: string, reason: string): Promise<Accepted> {
  return call(`/api/workflows/${enc(id)}/cancel`, { method: "POST", body: { reason } });
}

export function runQuery(id: string, name: string): Promise<unknown> {
  return call(`/api/workflows/${enc(id)}/queries/${enc(name)}`);
}

export function listJobs(
  filter: { state?: string; kind?: string; workflow_id?: string; limit?: number; cursor?: string },
  signal?: AbortSignal,
): Promise<{ items: Job[]; next_cursor: string | null }> {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) if (v !== undefined && v !== "") p.set(k, String(v));
  return call(`/api/jobs?${p}`, { signal });
}

export function retryJob(jobId: number | string): Promise<{ retried: boolean }> {
  return call(`/api/jobs/${enc(String(jobId))}/retry`, { method: "POST" });
}

export function getDashboard(signal?: AbortSignal): Promise<Dashboard> {
  return call("/api/inspect/dashboard", { signal });
}

/**
 * Opens a workflow's event stream (Server-Sent Events over fetch, so that it
 * carries the token), resuming after `lastEventId`. Resolves with the body
 * once the server has answered 200; throws `ApiError` otherwise.
 */
export async function openEvents(
  id: string,
  lastEventId: string | null,
  signal: AbortSignal,
): Promise<ReadableStream<Uint8Array>> {
  const extra: Record<string, string> = {};
  if (lastEventId) extra["last-event-id"] = lastEventId;
  const res = await fetch(`/api/workflows/${enc(id)}/events`, {
    headers: headers({ headers: extra }, "text/event-stream"),
    signal,
    cache: "no-store",
  });
  if (!res.ok) throw await failure(res, false);
  if (!res.body) throw new ApiError(res.status, "no_body", "The event stream has no body.");
  return res.body;
}
