// The chat's one adapter between the server and the UI.
//
// The server is the source of truth: the conversation is whatever the server
// has numbered (seq 1, 2, 3 ... without gaps). This module keeps a local copy
// of it, ordered by seq and without duplicates, plus the user's own messages
// that the server has not acknowledged yet (shown as pending, matched back by
// their client id). It owns the WebSocket, its reconnects, the polling
// fallback and the outbox, and hands assistant-ui an external store
// (`useFloeChat` below) so the thread primitives render exactly this state.
//
// While the assistant types, `stream` frames carry its reply as the model
// writes it: kept per turn as a draft (`ChatState.drafts`), shown as an
// in-progress message, and dropped when the stored reply arrives or typing
// ends. Drafts are ephemeral: the stored message is the truth.
//
// The core (`ChatConnection`) is framework-free: WebSocket, fetch, timers,
// randomness and ids are injected so the unit tests drive it with fakes.

import { useEffect, useMemo, useState, useSyncExternalStore } from "react";
import {
  useExternalStoreRuntime,
  type AppendMessage,
  type AssistantRuntime,
  type ThreadMessageLike,
} from "@assistant-ui/react";

// ---------------------------------------------------------------------------
// Wire types (the server's contract)

export type Role = "user" | "assistant";
export type MessageKind = "message" | "reply" | "greeting" | "nudge" | "error" | (string & {});

/** An item the assistant shows for confirmation before it goes to the inbox. */
export interface DraftItem {
  title: string;
  due_date?: string | null;
  tags?: string[];
}

export type Widget =
  | { type: "quick_replies"; options: string[] }
  | { type: "item_confirmation"; items: DraftItem[] };

export interface ServerMessage {
  seq: number;
  role: Role;
  kind: MessageKind;
  agent?: string | null;
  content: string;
  widget?: Widget | null;
  client_id?: string | null;
  created_at?: string;
}

export interface InboxItem {
  id: string;
  title: string;
  due_date?: string | null;
  tags?: string[];
  created_at?: string;
}

export type StepStatus = "done" | "current" | "upcoming";

export interface Progress {
  current_step: string;
  steps: { name: string; status: StepStatus }[];
  completed_steps?: string[];
  remaining_steps?: string[];
  percent: number;
}

export interface ApiErrorBody {
  code: string;
  message: string;
}

type ServerFrame =
  | { type: "snapshot"; state?: unknown; progress?: Progress | null; last_seq?: number }
  | { type: "message"; message: ServerMessage }
  | { type: "typing"; typing: boolean }
  | { type: "progress"; progress: Progress }
  | { type: "inbox"; items: InboxItem[] }
  | { type: "stream"; turn: string; attempt: number; call: number; offset: number; text: string }
  | { type: "ack"; client_id: string; seq: number; duplicate?: boolean }
  | { type: "error"; code: string; message: string }
  | { type: "ping" }
  | { type: "pong" }
  | { type: "resync" };

// ---------------------------------------------------------------------------
// Local state

/**
 * - `connecting`: the first socket attempt is under way.
 * - `connected`: a socket is open and live.
 * - `reconnecting`: the socket dropped or failed; retrying with backoff.
 * - `polling`: no socket could be opened; reading over HTTP while the socket is retried.
 * - `offline`: neither works right now (or the browser says it is offline).
 */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline" | "polling";

/** One message as the chat shows it. */
export interface ChatEntry {
  /** Stable React/assistant-ui id: `c:<client_id>` for the user's own messages, else `s:<seq>`. */
  key: string;
  /** The server's number; null until the server has it. */
  seq: number | null;
  role: Role;
  kind: MessageKind;
  agent: string | null;
  content: string;
  widget: Widget | null;
  clientId: string | null;
  createdAt: string;
  /** `pending`: queued or in flight; `failed`: the server refused it (see `error`). */
  status: "sent" | "pending" | "failed";
  error?: string;
}

/** A reply the assistant is writing, as streamed so far. */
export interface StreamDraft {
  /** The turn writing it (`<workflow id>/<activity id>`). */
  turn: string;
  /** The attempt and the model call writing it: a later one starts the text again. */
  attempt: number;
  call: number;
  /** The text received so far (never with a gap in it). */
  text: string;
}

export interface ChatState {
  /** Confirmed messages by seq, then the user's not yet confirmed ones in send order. */
  messages: readonly ChatEntry[];
  /**
   * Replies being written (normally at most one), oldest first; only while
   * `typing`. The stored message replaces them.
   */
  drafts: readonly StreamDraft[];
  /** The highest seq up to which every message has been seen (what `hello.after` carries). */
  lastSeq: number;
  typing: boolean;
  progress: Progress | null;
  /** The workflow's state as the server reported it (`GET /api/workflow/state`). */
  workflowState: unknown;
  inbox: readonly InboxItem[];
  connection: ConnectionState;
  /** How many of the user's messages are waiting to be delivered. */
  queued: number;
  completed: boolean;
  /** A short human-readable notice about the last problem, or null. */
  notice: string | null;
  /** The session is gone: the app must sign in again. */
  unauthorized: boolean;
}

// ---------------------------------------------------------------------------
// Injected environment

/** What the adapter needs of a WebSocket (the browser's one fits). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type TimerHandle = unknown;

export interface Timers {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

/** A minimal Storage, for keeping the outbox across reloads. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ConnectionOptions {
  /** WebSocket URL; default `ws(s)://<this host>/ws`. */
  wsUrl?: string;
  /** Prefix of the HTTP API; default "" (same origin). */
  apiBase?: string;
  /** Opens a socket; null when WebSockets are not available. Default: the global WebSocket. */
  createSocket?: ((url: string) => SocketLike) | null;
  fetch?: FetchLike;
  timers?: Timers;
  random?: () => number;
  newId?: () => string;
  now?: () => number;
  /** Whether the browser thinks it is online. Default: navigator.onLine. */
  isOnline?: () => boolean;
  /** Where to keep the outbox across reloads, and under which key. */
  storage?: StorageLike | null;
  storageKey?: string;
  /** First reconnect delay and the cap (ms). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Consecutive failed socket attempts before reading over HTTP. */
  failuresBeforePolling?: number;
  pollIntervalMs?: number;
  /** A socket that has not opened by then counts as failed. */
  connectTimeoutMs?: number;
  /** A socket silent for this long (the server pings every 20 s) is considered dead. */
  idleTimeoutMs?: number;
  /** How long a gap in seq may stay open before it is filled over HTTP. */
  catchUpDelayMs?: number;
  /** Messages per page when reading over HTTP. */
  pageSize?: number;
}

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential from
 * `base`, capped at `cap`, with "equal jitter" (between half and all of it)
 * so that many clients told to resync at once do not come back at once.
 */
export function backoffDelay(attempt: number, random: () => number, base = 500, cap = 10_000): number {
  const exp = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** A client id for a message: `crypto.randomUUID()` where there is one (secure contexts). */
export function newClientId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function defaultWsUrl(): string {
  const loc = globalThis.location;
  if (!loc) return "ws://127.0.0.1:8080/ws";
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws`;
}

function defaultCreateSocket(): ((url: string) => SocketLike) | null {
  const WS = (globalThis as { WebSocket?: new (url: string) => SocketLike }).WebSocket;
  return typeof WS === "function" ? (url) => new WS(url) : null;
}

const globalTimers: Timers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
};

const SOCKET_OPEN = 1;

/** Pieces of a draft kept while an earlier piece is missing. */
const MAX_AHEAD = 64;
/** Turns remembered as finished (their late pieces are ignored). */
const MAX_CLOSED_TURNS = 32;

interface DraftBuffer extends StreamDraft {
  /** Pieces that arrived after a gap, by offset, applied once it is filled. */
  ahead: Map<number, string>;
}

/** Puts `text` at `offset` (at most the draft's length): what extends the draft wins. */
function placeAt(d: DraftBuffer, offset: number, text: string): void {
  if (offset + text.length > d.text.length) d.text = d.text.slice(0, offset) + text;
}

/** The server refused this message for good: don't retry it. */
const FATAL_SEND_CODES = new Set(["onboarding_completed", "validation_failed", "payload_too_large", "malformed_json", "bad_request"]);

interface Outgoing {
  clientId: string;
  content: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody | null,
    readonly retryAfterMs: number | null,
  ) {
    super(body?.message ?? `HTTP ${status}`);
  }
}

function isCompletedStep(step: unknown): boolean {
  return step === "completed" || step === "done";
}

function workflowCompleted(state: unknown, progress: Progress | null): boolean {
  if (progress && isCompletedStep(progress.current_step)) return true;
  if (state && typeof state === "object") {
    const s = state as Record<string, unknown>;
    return isCompletedStep(s.current_step) || isCompletedStep(s.state);
  }
  return isCompletedStep(state);
}

function validMessage(m: unknown): m is ServerMessage {
  if (!m || typeof m !== "object") return false;
  const x = m as Record<string, unknown>;
  return (
    typeof x.seq === "number" &&
    Number.isInteger(x.seq) &&
    x.seq > 0 &&
    (x.role === "user" || x.role === "assistant") &&
    typeof x.content === "string"
  );
}

function sameEntry(a: ChatEntry, b: ChatEntry): boolean {
  return (
    a.seq === b.seq &&
    a.role === b.role &&
    a.kind === b.kind &&
    a.agent === b.agent &&
    a.content === b.content &&
    a.clientId === b.clientId &&
    a.createdAt === b.createdAt &&
    a.status === b.status &&
    JSON.stringify(a.widget) === JSON.stringify(b.widget)
  );
}

// ---------------------------------------------------------------------------
// The core

export class ChatConnection {
  private readonly o: Required<Omit<ConnectionOptions, "storage" | "createSocket">> & {
    storage: StorageLike | null;
    createSocket: ((url: string) => SocketLike) | null;
  };
  private readonly listeners = new Set<() => void>();
  private state: ChatState;

  // The conversation.
  private readonly confirmed = new Map<number, ChatEntry>();
  private local: ChatEntry[] = []; // the user's messages without a seq yet
  private outbox: Outgoing[] = [];
  private maxSeq = 0;

  // Replies being written, by turn, and the turns whose reply has arrived.
  private readonly drafts = new Map<string, DraftBuffer>();
  private closedTurns: string[] = [];

  // The socket.
  private running = false;
  private socket: SocketLike | null = null;
  private socketOpen = false;
  private socketLive = false; // has received a frame: counts as a good connection
  private inFlight: string | null = null; // client id sent over the socket, awaiting its ack
  private failures = 0; // consecutive socket attempts that never opened
  private attempt = 0; // reconnect attempts since the last good connection
  private reconnectTimer: TimerHandle | null = null;
  private connectTimer: TimerHandle | null = null;
  private idleTimer: TimerHandle | null = null;

  // HTTP: polling, catch-up, sending.
  private polling = false;
  private pollTimer: TimerHandle | null = null;
  private pollBusy = false;
  private pollTicks = 0;
  private catchUpTimer: TimerHandle | null = null;
  private catchUpBusy = false;
  private httpSending: string | null = null;
  private sendRetryTimer: TimerHandle | null = null;
  private notBefore = 0; // no sends before this time (rate limit)
  private generation = 0; // bumps on stop(): late async results of an older run are dropped

  constructor(options: ConnectionOptions = {}) {
    this.o = {
      wsUrl: options.wsUrl ?? defaultWsUrl(),
      apiBase: options.apiBase ?? "",
      createSocket: options.createSocket === undefined ? defaultCreateSocket() : options.createSocket,
      fetch: options.fetch ?? ((url, init) => globalThis.fetch(url, init)),
      timers: options.timers ?? globalTimers,
      random: options.random ?? Math.random,
      newId: options.newId ?? newClientId,
      now: options.now ?? (() => Date.now()),
      isOnline: options.isOnline ?? (() => globalThis.navigator?.onLine ?? true),
      storage: options.storage ?? null,
      storageKey: options.storageKey ?? "floe.outbox",
      backoffBaseMs: options.backoffBaseMs ?? 500,
      backoffCapMs: options.backoffCapMs ?? 10_000,
      failuresBeforePolling: options.failuresBeforePolling ?? 3,
      pollIntervalMs: options.pollIntervalMs ?? 1_500,
      connectTimeoutMs: options.connectTimeoutMs ?? 8_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 65_000,
      catchUpDelayMs: options.catchUpDelayMs ?? 1_500,
      pageSize: options.pageSize ?? 100,
    };
    this.state = {
      messages: [],
      drafts: [],
      lastSeq: 0,
      typing: false,
      progress: null,
      workflowState: null,
      inbox: [],
      connection: "connecting",
      queued: 0,
      completed: false,
      notice: null,
      unauthorized: false,
    };
    this.restoreOutbox();
  }

  // -- the store ------------------------------------------------------------

  getState = (): ChatState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private update(patch: Partial<ChatState>, rebuildMessages = false): void {
    const next: ChatState = { ...this.state, ...patch };
    if (rebuildMessages) {
      const sorted = [...this.confirmed.values()].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
      next.messages = [...sorted, ...this.local];
      next.queued = this.outbox.length;
    }
    next.completed = next.completed || workflowCompleted(next.workflowState, next.progress);
    // Typing has ended: whatever was being written is stored (or failed).
    if (!next.typing && this.drafts.size > 0) {
      this.closeDrafts();
      next.drafts = [];
    }
    this.state = next;
    for (const l of [...this.listeners]) l();
  }

  private setConnection(connection: ConnectionState): void {
    if (this.state.connection !== connection) this.update({ connection });
  }

  // -- lifecycle ------------------------------------------------------------

  /** Connects (or, without WebSocket support, starts polling). Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.failures = 0;
    this.attempt = 0;
    this.update({ connection: "connecting" });
    this.connect();
  }

  /** Closes everything; `start()` may be called again. */
  stop(): void {
    this.running = false;
    this.generation++;
    this.dropSocket();
    this.stopPolling();
    for (const t of [this.reconnectTimer, this.catchUpTimer, this.sendRetryTimer]) {
      if (t !== null) this.o.timers.clearTimeout(t);
    }
    this.reconnectTimer = this.catchUpTimer = this.sendRetryTimer = null;
    this.pollBusy = this.catchUpBusy = false;
    this.httpSending = null;
  }

  /** Try the socket now (e.g. the browser came back online). */
  reconnectNow(): void {
    if (!this.running) return;
    this.attempt = 0;
    if (this.polling) void this.pollNow();
    if (this.socket) return;
    if (this.reconnectTimer !== null) this.o.timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.connect();
  }

  /** The browser went offline: say so until something works again. */
  markOffline(): void {
    if (this.state.connection !== "connected") this.setConnection("offline");
  }

  // -- sending --------------------------------------------------------------

  /**
   * Sends a message: it shows at once as pending and is delivered exactly
   * once, now or when a connection is back. Its client id is made here, once,
   * and reused by every retry (the server stores a client id once).
   * Returns the client id, or null for a blank message.
   */
  send(content: string): string | null {
    const text = content.trim();
    if (!text) return null;
    const clientId = this.o.newId();
    this.local = [...this.local, this.pendingEntry(clientId, text)];
    this.outbox.push({ clientId, content: text });
    this.saveOutbox();
    this.update({ notice: null }, true);
    this.pump();
    return clientId;
  }

  private pendingEntry(clientId: string, content: string): ChatEntry {
    return {
      key: `c:${clientId}`,
      seq: null,
      role: "user",
      kind: "message",
      agent: null,
      content,
      widget: null,
      clientId,
      createdAt: new Date(this.o.now()).toISOString(),
      status: "pending",
    };
  }

  /** Delivers the head of the outbox over whatever works now. */
  private pump(): void {
    if (!this.running || this.outbox.length === 0) return;
    const wait = this.notBefore - this.o.now();
    if (wait > 0) {
      this.scheduleSendRetry(wait);
      return;
    }
    if (this.socket && this.socketOpen) {
      if (this.inFlight !== null) return;
      const next = this.outbox[0];
      // Still on its way over HTTP: wait for that answer, keeping the order.
      if (next.clientId === this.httpSending) return;
      this.inFlight = next.clientId;
      this.sendFrame({ type: "message", content: next.content, client_id: next.clientId });
    } else if (this.polling) {
      void this.sendOverHttp();
    }
  }

  private scheduleSendRetry(ms: number): void {
    if (this.sendRetryTimer !== null) return;
    this.sendRetryTimer = this.o.timers.setTimeout(() => {
      this.sendRetryTimer = null;
      this.pump();
    }, ms);
  }

  /** One message at a time over `POST /api/chat/message`, in order. */
  private async sendOverHttp(): Promise<void> {
    if (this.httpSending !== null) return;
    const next = this.outbox[0];
    if (!next) return;
    const gen = this.generation;
    this.httpSending = next.clientId;
    try {
      const body = await this.request<{ seq: number; duplicate: boolean }>("/api/chat/message", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ content: next.content, client_id: next.clientId }),
      });
      if (gen !== this.generation) return;
      this.httpSending = null;
      this.acknowledge(next.clientId, body.seq);
    } catch (e) {
      if (gen !== this.generation) return;
      this.httpSending = null;
      if (e instanceof HttpError) {
        if (e.status === 401) return this.unauthorized();
        if (e.status === 429) {
          this.notBefore = this.o.now() + (e.retryAfterMs ?? 2_000);
          this.update({ notice: "Sending too fast; retrying shortly." });
          this.pump();
          return;
        }
        if (e.status === 409 || e.status === 413 || e.status === 422 || e.status === 400) {
          this.refuse(next.clientId, e.body ?? { code: "conflict", message: e.message });
          return;
        }
      }
      // Network trouble or a server error: it stays queued for the next
      // poll tick, or goes over the socket if that is back.
      if (this.socketOpen) this.pump();
    }
  }

  /** The server has the message as `seq`. */
  private acknowledge(clientId: string, seq: number): void {
    if (this.inFlight === clientId) this.inFlight = null;
    this.outbox = this.outbox.filter((m) => m.clientId !== clientId);
    this.saveOutbox();
    const i = this.local.findIndex((e) => e.clientId === clientId);
    if (i >= 0) {
      const entry = this.local[i];
      this.local = this.local.filter((_, j) => j !== i);
      if (!this.confirmed.has(seq) && Number.isInteger(seq) && seq > 0) {
        this.confirmed.set(seq, { ...entry, seq, status: "sent" });
        this.maxSeq = Math.max(this.maxSeq, seq);
      }
    }
    this.advance();
    this.update({ notice: null }, true);
    this.pump();
  }

  /** The server refused the message for good. */
  private refuse(clientId: string, err: ApiErrorBody): void {
    if (this.inFlight === clientId) this.inFlight = null;
    this.outbox = this.outbox.filter((m) => m.clientId !== clientId);
    this.saveOutbox();
    const message =
      err.code === "onboarding_completed" ? "The onboarding is complete; this message was not sent." : err.message;
    this.local = this.local.map((e) => (e.clientId === clientId ? { ...e, status: "failed", error: message } : e));
    this.update({ completed: this.state.completed || err.code === "onboarding_completed", notice: message }, true);
    this.pump();
  }

  private saveOutbox(): void {
    const s = this.o.storage;
    if (!s) return;
    try {
      if (this.outbox.length === 0) s.removeItem(this.o.storageKey);
      else s.setItem(this.o.storageKey, JSON.stringify(this.outbox));
    } catch {
      // Storage full or blocked: the outbox still lives in memory.
    }
  }

  private restoreOutbox(): void {
    const s = this.o.storage;
    if (!s) return;
    try {
      const raw = s.getItem(this.o.storageKey);
      const saved: unknown = raw ? JSON.parse(raw) : [];
      if (!Array.isArray(saved)) return;
      for (const m of saved) {
        if (m && typeof m.clientId === "string" && typeof m.content === "string") {
          this.outbox.push({ clientId: m.clientId, content: m.content });
          this.local.push(this.pendingEntry(m.clientId, m.content));
        }
      }
      if (this.outbox.length) this.update({}, true);
    } catch {
      // A corrupt entry: start with an empty outbox.
    }
  }

  // -- the conversation -----------------------------------------------------

  /** Merges messages by seq; a user's message with a client id replaces its pending copy. */
  private ingest(messages: readonly unknown[]): void {
    let changed = false;
    let replied = false;
    for (const raw of messages) {
      if (!validMessage(raw)) continue;
      const fresh = this.upsert(raw);
      changed = fresh || changed;
      replied = replied || (fresh && raw.role === "assistant");
    }
    if (!changed) return;
    this.advance();
    // The assistant's stored reply replaces what was streamed of it.
    const patch: Partial<ChatState> = {};
    if (replied && this.drafts.size > 0) {
      this.closeDrafts();
      patch.drafts = [];
    }
    this.update(patch, true);
    if (this.maxSeq > this.state.lastSeq) this.scheduleCatchUp();
    this.pump();
  }

  private upsert(m: ServerMessage): boolean {
    const existing = this.confirmed.get(m.seq);
    let key = existing?.key ?? (m.client_id ? `c:${m.client_id}` : `s:${m.seq}`);
    if (m.client_id) {
      const i = this.local.findIndex((e) => e.clientId === m.client_id);
      if (i >= 0) {
        key = this.local[i].key;
        this.local = this.local.filter((_, j) => j !== i);
        this.outbox = this.outbox.filter((o) => o.clientId !== m.client_id);
        if (this.inFlight === m.client_id) this.inFlight = null;
        this.saveOutbox();
      }
    }
    const entry: ChatEntry = {
      key,
      seq: m.seq,
      role: m.role,
      kind: m.kind ?? (m.role === "user" ? "message" : "reply"),
      agent: m.agent ?? null,
      content: m.content,
      widget: m.widget ?? null,
      clientId: m.client_id ?? null,
      createdAt: m.created_at ?? existing?.createdAt ?? new Date(this.o.now()).toISOString(),
      status: "sent",
    };
    if (existing && sameEntry(existing, entry)) return false;
    this.confirmed.set(m.seq, entry);
    this.maxSeq = Math.max(this.maxSeq, m.seq);
    return true;
  }

  /** Moves `lastSeq` over every seq seen without a gap. */
  private advance(): void {
    let last = this.state.lastSeq;
    while (this.confirmed.has(last + 1)) last++;
    if (last !== this.state.lastSeq) this.state = { ...this.state, lastSeq: last };
  }

  /** A gap (or a snapshot ahead of us) that frames don't fill soon is read over HTTP. */
  private scheduleCatchUp(): void {
    if (this.catchUpTimer !== null || !this.running) return;
    this.catchUpTimer = this.o.timers.setTimeout(() => {
      this.catchUpTimer = null;
      if (this.maxSeq > this.state.lastSeq) void this.catchUp();
    }, this.o.catchUpDelayMs);
  }

  private async catchUp(): Promise<void> {
    if (this.catchUpBusy) return;
    this.catchUpBusy = true;
    const gen = this.generation;
    try {
      await this.readMessages();
    } catch (e) {
      if (gen === this.generation && e instanceof HttpError && e.status === 401) this.unauthorized();
    } finally {
      if (gen === this.generation) this.catchUpBusy = false;
    }
  }

  /** Reads every message after `lastSeq` over HTTP. Returns whether any was new. */
  private async readMessages(): Promise<boolean> {
    const gen = this.generation;
    let any = false;
    for (let page = 0; page < 50; page++) {
      const after = this.state.lastSeq;
      const body = await this.request<{ messages: unknown[]; last_seq: number }>(
        `/api/chat/messages?after=${after}&limit=${this.o.pageSize}`,
      );
      if (gen !== this.generation) return any;
      const before = this.state.messages;
      this.ingest(Array.isArray(body.messages) ? body.messages : []);
      any = any || this.state.messages !== before;
      if (!Array.isArray(body.messages) || body.messages.length < this.o.pageSize) break;
      if (this.state.lastSeq === after) break; // no progress: don't spin
    }
    return any;
  }

  private mergeInbox(items: unknown): void {
    if (!Array.isArray(items)) return;
    const byId = new Map(this.state.inbox.map((i) => [i.id, i]));
    let changed = false;
    for (const it of items as InboxItem[]) {
      if (!it || typeof it.id !== "string" || typeof it.title !== "string") continue;
      const old = byId.get(it.id);
      if (!old || JSON.stringify(old) !== JSON.stringify(it)) {
        byId.set(it.id, it);
        changed = true;
      }
    }
    if (!changed) return;
    const inbox = [...byId.values()].sort((a, b) => (a.created_at ?? "").localeCompare(b.created_at ?? ""));
    this.update({ inbox });
  }

  // -- the socket -----------------------------------------------------------

  private connect(): void {
    if (!this.running || this.socket) return;
    const create = this.o.createSocket;
    if (!create) {
      // No WebSocket here at all: HTTP is all there is.
      this.startPolling();
      return;
    }
    let sock: SocketLike;
    try {
      sock = create(this.o.wsUrl);
    } catch {
      this.onSocketLost(false);
      return;
    }
    this.socket = sock;
    this.socketOpen = false;
    this.socketLive = false;
    this.connectTimer = this.o.timers.setTimeout(() => {
      this.connectTimer = null;
      if (this.socket === sock && !this.socketOpen) this.lose(sock);
    }, this.o.connectTimeoutMs);

    sock.onopen = () => {
      if (this.socket !== sock) return;
      this.clearConnectTimer();
      this.socketOpen = true;
      this.inFlight = null;
      this.sendFrame({ type: "hello", after: this.state.lastSeq });
      this.stopPolling();
      this.armIdle(sock);
      this.update({ connection: "connected", notice: null });
      this.pump();
    };
    sock.onmessage = (ev) => {
      if (this.socket !== sock) return;
      this.armIdle(sock);
      if (!this.socketLive) {
        this.socketLive = true;
        this.failures = 0;
        this.attempt = 0;
      }
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(ev.data)) as ServerFrame;
      } catch {
        return;
      }
      if (frame && typeof frame === "object") this.handleFrame(frame);
    };
    sock.onerror = () => {
      if (this.socket === sock) this.lose(sock);
    };
    sock.onclose = () => {
      if (this.socket === sock) this.lose(sock);
    };
  }

  private lose(sock: SocketLike): void {
    // A socket that never got a frame from the server (refused, timed out,
    // or closed right after the upgrade) counts as a failed attempt.
    const worked = this.socketLive;
    this.dropSocket();
    try {
      sock.close();
    } catch {
      // already closed
    }
    this.onSocketLost(worked);
  }

  /** Detaches and closes the current socket, if any. */
  private dropSocket(): void {
    const sock = this.socket;
    this.socket = null;
    this.socketOpen = false;
    this.socketLive = false;
    this.inFlight = null; // not acked: it goes again, with the same client id
    this.clearConnectTimer();
    if (this.idleTimer !== null) this.o.timers.clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (!sock) return;
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
    try {
      if (sock.readyState <= SOCKET_OPEN) sock.close(1000, "client closing");
    } catch {
      // ignore
    }
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) this.o.timers.clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  private onSocketLost(worked: boolean): void {
    if (!this.running) return;
    if (!worked) this.failures++;
    const fallback = this.failures >= this.o.failuresBeforePolling;
    if (fallback) this.startPolling();
    if (!this.polling) this.setConnection(this.o.isOnline() ? "reconnecting" : "offline");
    this.scheduleReconnect();
  }

  private scheduleReconnect(delay?: number): void {
    if (!this.running || this.reconnectTimer !== null) return;
    const ms = delay ?? backoffDelay(this.attempt++, this.o.random, this.o.backoffBaseMs, this.o.backoffCapMs);
    this.reconnectTimer = this.o.timers.setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, ms);
  }

  private armIdle(sock: SocketLike): void {
    if (this.idleTimer !== null) this.o.timers.clearTimeout(this.idleTimer);
    this.idleTimer = this.o.timers.setTimeout(() => {
      this.idleTimer = null;
      if (this.socket === sock) this.lose(sock);
    }, this.o.idleTimeoutMs);
  }

  private sendFrame(frame: Record<string, unknown>): void {
    const sock = this.socket;
    if (!sock || !this.socketOpen) return;
    try {
      sock.send(JSON.stringify(frame));
    } catch {
      this.lose(sock);
    }
  }

  private handleFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case "snapshot": {
        const progress = frame.progress ?? this.state.progress;
        const st = frame.state as { typing?: unknown } | null | undefined;
        const typing = st && typeof st === "object" && typeof st.typing === "boolean" ? st.typing : this.state.typing;
        if (typeof frame.last_seq === "number") this.maxSeq = Math.max(this.maxSeq, frame.last_seq);
        this.update({ workflowState: frame.state ?? this.state.workflowState, progress, typing });
        if (this.maxSeq > this.state.lastSeq) this.scheduleCatchUp();
        void this.refreshInbox();
        break;
      }
      case "message":
        this.ingest([frame.message]);
        break;
      case "typing":
        this.update({ typing: !!frame.typing });
        break;
      case "progress":
        if (frame.progress) this.update({ progress: frame.progress });
        break;
      case "inbox":
        this.mergeInbox(frame.items);
        break;
      case "stream":
        this.onStream(frame);
        break;
      case "ack":
        if (typeof frame.client_id === "string" && typeof frame.seq === "number") {
          this.acknowledge(frame.client_id, frame.seq);
        }
        break;
      case "error":
        this.onErrorFrame(frame.code, frame.message);
        break;
      case "ping":
        this.sendFrame({ type: "pong" });
        break;
      case "resync": {
        // The server lost track of us: come back and resume from lastSeq.
        const sock = this.socket;
        this.dropSocket();
        if (sock) {
          this.setConnection("reconnecting");
          this.scheduleReconnect(backoffDelay(0, this.o.random, this.o.backoffBaseMs, this.o.backoffCapMs));
        }
        break;
      }
      default:
        break;
    }
  }

  /**
   * A piece of a reply being written. Pieces of one turn arrive at growing
   * offsets; a duplicate or overlapping one changes nothing it already
   * has, one after a gap waits for the gap to fill, and one from a later
   * attempt or model call starts the draft again (an earlier one's are
   * ignored from then on). Only while typing, and never for a turn whose
   * reply has been stored.
   */
  private onStream(frame: Extract<ServerFrame, { type: "stream" }>): void {
    const { turn, attempt, call, offset, text } = frame;
    if (
      typeof turn !== "string" ||
      !Number.isInteger(attempt) ||
      !Number.isInteger(call) ||
      !Number.isInteger(offset) ||
      offset < 0 ||
      typeof text !== "string"
    ) {
      return;
    }
    if (!this.state.typing || this.closedTurns.includes(turn)) return;
    let d = this.drafts.get(turn);
    if (d && (attempt < d.attempt || (attempt === d.attempt && call < d.call))) return;
    const before = d?.text ?? null;
    if (!d || attempt !== d.attempt || call !== d.call) {
      d = { turn, attempt, call, text: "", ahead: new Map() };
      this.drafts.set(turn, d);
    }
    if (offset > d.text.length) {
      if (d.ahead.size < MAX_AHEAD) d.ahead.set(offset, text);
    } else {
      placeAt(d, offset, text);
    }
    for (let filled = true; filled && d.ahead.size > 0; ) {
      filled = false;
      for (const [at, piece] of d.ahead) {
        if (at <= d.text.length) {
          d.ahead.delete(at);
          placeAt(d, at, piece);
          filled = true;
        }
      }
    }
    if (d.text !== before) this.update({ drafts: this.visibleDrafts() });
  }

  private visibleDrafts(): StreamDraft[] {
    return [...this.drafts.values()]
      .filter((d) => d.text.length > 0)
      .map(({ turn, attempt, call, text }) => ({ turn, attempt, call, text }));
  }

  /** The replies being written are done: forget them, and ignore their late pieces. */
  private closeDrafts(): void {
    this.closedTurns = [...this.closedTurns, ...this.drafts.keys()].slice(-MAX_CLOSED_TURNS);
    this.drafts.clear();
  }

  private onErrorFrame(code: string, message: string): void {
    if (code === "unauthorized") return this.unauthorized();
    const pending = this.inFlight;
    if (pending !== null) {
      if (FATAL_SEND_CODES.has(code)) return this.refuse(pending, { code, message });
      // Rate limited or a server hiccup: the same message again, later.
      this.inFlight = null;
      this.notBefore = this.o.now() + 2_000;
      this.update({ notice: code === "rate_limited" ? "Sending too fast; retrying shortly." : message });
      this.pump();
      return;
    }
    this.update({ notice: message || code });
  }

  private unauthorized(): void {
    this.stop();
    this.update({ unauthorized: true, connection: "offline" });
  }

  // -- polling --------------------------------------------------------------

  private startPolling(): void {
    if (this.polling || !this.running) return;
    this.polling = true;
    this.pollTicks = 0;
    void this.pollNow();
  }

  private stopPolling(): void {
    this.polling = false;
    if (this.pollTimer !== null) this.o.timers.clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  private async pollNow(): Promise<void> {
    if (!this.polling || this.pollBusy) return;
    if (this.pollTimer !== null) this.o.timers.clearTimeout(this.pollTimer);
    this.pollTimer = null;
    this.pollBusy = true;
    const gen = this.generation;
    try {
      const fresh = await this.readMessages();
      if (gen !== this.generation || !this.polling) return;
      const state = await this.request<unknown>("/api/workflow/state").catch((e: unknown) => {
        if (e instanceof HttpError && e.status !== 401) return undefined; // no workflow yet: fine
        throw e;
      });
      if (gen !== this.generation || !this.polling) return;
      if (state !== undefined) {
        const typing = (state as { typing?: unknown } | null)?.typing;
        this.update({ workflowState: state, typing: typeof typing === "boolean" ? typing : this.state.typing });
      }
      if (fresh || this.pollTicks % 4 === 0) {
        const [progress, inbox] = await Promise.all([
          this.request<Progress>("/api/workflow/progress").catch(() => null),
          this.request<{ items: InboxItem[] }>("/api/inbox").catch(() => null),
        ]);
        if (gen !== this.generation || !this.polling) return;
        if (progress && Array.isArray(progress.steps)) this.update({ progress });
        if (inbox) this.mergeInbox(inbox.items);
      }
      this.pollTicks++;
      if (this.socketOpen) return;
      const wasOffline = this.state.connection === "offline";
      this.setConnection(this.o.isOnline() ? "polling" : "offline");
      this.pump();
      // The server answers again: try the socket now rather than at the
      // end of a long backoff.
      if (wasOffline && !this.socket && this.reconnectTimer !== null) {
        this.o.timers.clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
        this.attempt = 0;
        this.connect();
      }
    } catch (e) {
      if (gen !== this.generation) return;
      if (e instanceof HttpError && e.status === 401) return this.unauthorized();
      if (!this.socketOpen) this.setConnection("offline");
    } finally {
      if (gen === this.generation) {
        this.pollBusy = false;
        if (this.polling && this.running) {
          this.pollTimer = this.o.timers.setTimeout(() => {
            this.pollTimer = null;
            void this.pollNow();
          }, this.o.pollIntervalMs);
        }
      }
    }
  }

  private async refreshInbox(): Promise<void> {
    const gen = this.generation;
    try {
      const body = await this.request<{ items: InboxItem[] }>("/api/inbox");
      if (gen === this.generation) this.mergeInbox(body.items);
    } catch {
      // Inbox frames keep it current anyway.
    }
  }

  // -- HTTP -----------------------------------------------------------------

  private async request<T>(path: string, init?: RequestInit): Promise<T> {
    const res = await this.o.fetch(this.o.apiBase + path, {
      credentials: "same-origin",
      ...init,
      headers: { accept: "application/json", ...(init?.headers ?? {}) },
    });
    if (!res.ok) {
      let body: ApiErrorBody | null = null;
      try {
        const json = (await res.json()) as { error?: ApiErrorBody };
        body = json?.error ?? null;
      } catch {
        // not JSON
      }
      const ra = Number(res.headers.get("retry-after"));
      throw new HttpError(res.status, body, Number.isFinite(ra) && ra > 0 ? ra * 1000 : null);
    }
    return (await res.json()) as T;
  }
}

// ---------------------------------------------------------------------------
// assistant-ui: the external store

/** What the UI reads from a converted message's `metadata.custom`. */
export interface EntryMeta {
  seq: number | null;
  kind: MessageKind;
  agent: string | null;
  status: ChatEntry["status"];
  error: string | null;
  clientId: string | null;
}

/**
 * Our message → assistant-ui's. The text is a text part; a widget is a data
 * part named after its type (`quick_replies`, `item_confirmation`), so the
 * thread renders it through `MessagePrimitive.Parts`' data renderers.
 */
export function convertMessage(e: ChatEntry): ThreadMessageLike {
  const meta: EntryMeta = {
    seq: e.seq,
    kind: e.kind,
    agent: e.agent,
    status: e.status,
    error: e.error ?? null,
    clientId: e.clientId,
  };
  const content: Exclude<ThreadMessageLike["content"], string>[number][] = [{ type: "text", text: e.content }];
  if (e.widget && (e.widget.type === "quick_replies" || e.widget.type === "item_confirmation")) {
    content.push({ type: "data", name: e.widget.type, data: e.widget });
  }
  const createdAt = new Date(e.createdAt);
  return {
    id: e.key,
    role: e.role,
    content,
    createdAt: Number.isNaN(createdAt.getTime()) ? undefined : createdAt,
    ...(e.role === "assistant" ? { status: { type: "complete", reason: "stop" } as const } : {}),
    metadata: { custom: meta as unknown as Record<string, unknown> },
  };
}

/** The text of a message the composer hands over. */
export function appendText(message: AppendMessage): string {
  return message.content
    .map((p) => (p.type === "text" ? p.text : ""))
    .join("\n")
    .trim();
}

export interface FloeChat {
  state: ChatState;
  runtime: AssistantRuntime;
  send: (content: string) => string | null;
  connection: ChatConnection;
}

/**
 * The React side: one `ChatConnection` per mounted chat, its state as a
 * React store, and assistant-ui's runtime over it. `enabled` false holds the
 * connection back (e.g. until the workflow has been started).
 */
export function useFloeChat(options: ConnectionOptions & { enabled?: boolean } = {}): FloeChat {
  const { enabled = true, ...connOptions } = options;
  const [connection] = useState(() => new ChatConnection(connOptions));
  const state = useSyncExternalStore(connection.subscribe, connection.getState, connection.getState);

  useEffect(() => {
    if (!enabled) return;
    connection.start();
    const online = () => connection.reconnectNow();
    const offline = () => connection.markOffline();
    globalThis.addEventListener?.("online", online);
    globalThis.addEventListener?.("offline", offline);
    return () => {
      globalThis.removeEventListener?.("online", online);
      globalThis.removeEventListener?.("offline", offline);
      connection.stop();
    };
  }, [connection, enabled]);

  const runtime = useExternalStoreRuntime<ChatEntry>({
    messages: state.messages,
    convertMessage,
    // Our typing indicator comes from the server's typing frames. The thread
    // itself never "runs": the person may write while the assistant thinks
    // (the workflow queues turns), and a running thread would block the
    // composer and insert a placeholder assistant message.
    isRunning: false,
    isDisabled: state.unauthorized,
    isSendDisabled: state.completed,
    onNew: async (message) => {
      connection.send(appendText(message));
    },
  });

  const send = useMemo(() => (content: string) => connection.send(content), [connection]);
  return { state, runtime, send, connection };
}
