// Follows a workflow's event stream: reads it with the SSE parser, and when
// the connection drops opens it again with `Last-Event-ID`, so nothing is
// missed or repeated. The stream is given as a function (`open`), so the
// reconnect logic is tested without a server.
//
//   connecting ──200──► connected ──drop / error──► reconnecting ──backoff──► (open again)
//                          │ `end` event                   │ 401 / 404
//                          ▼                               ▼
//                        ended                           failed

import { SseParser, type SseEvent } from "./sse";

export type LiveState = "connecting" | "connected" | "reconnecting" | "ended" | "failed";

export interface FollowOptions {
  /** Opens the stream after `lastEventId`; rejects when the server refuses. */
  open: (lastEventId: string | null, signal: AbortSignal) => Promise<ReadableStream<Uint8Array>>;
  /** Each event, `end` included. */
  onEvent: (event: SseEvent) => void;
  onState: (state: LiveState, detail?: string) => void;
  /** Resume after this id (the last history entry already shown). */
  lastEventId?: string | null;
  /** Whether an error means "stop trying" (401, 404). */
  isFatal?: (error: unknown) => boolean;
  /** Delay before the attempt'th reconnection (0-based), in ms. */
  backoff?: (attempt: number) => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** min(10 s, 500 ms · 2^attempt), jittered to between half and all of it. */
export function defaultBackoff(attempt: number): number {
  const full = Math.min(10_000, 500 * 2 ** attempt);
  return full / 2 + Math.random() * (full / 2);
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

/** Starts following; call the returned function to stop. */
export function follow(options: FollowOptions): () => void {
  const controller = new AbortController();
  void run(options, controller.signal);
  return () => controller.abort();
}

async function run(options: FollowOptions, signal: AbortSignal): Promise<void> {
  const backoff = options.backoff ?? defaultBackoff;
  const sleep = options.sleep ?? defaultSleep;
  let ended = false;
  const parser = new SseParser((event) => {
    if (event.type === "end") ended = true;
    options.onEvent(event);
  });
  parser.lastEventId = options.lastEventId ?? "";
  let attempt = 0;
  options.onState("connecting");

  while (!signal.aborted) {
    let received = false;
    let lastError: unknown = null;
    try {
      const body = await options.open(parser.lastEventId || null, signal);
      if (signal.aborted) return;
      options.onState("connected");
      const reader = body.getReader();
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (value && value.length > 0) {
            received = true;
            parser.push(decoder.decode(value, { stream: true }));
          }
          if (ended) break;
        }
      } finally {
        reader.cancel().catch(() => undefined);
      }
    } catch (e) {
      if (signal.aborted) return;
      if (options.isFatal?.(e)) {
        options.onState("failed", e instanceof Error ? e.message : String(e));
        return;
      }
      lastError = e;
    }
    if (signal.aborted) return;
    if (ended) {
      options.onState("ended");
      return;
    }
    // Dropped: whatever half-event arrived is dropped with it, and the
    // stream resumes after the last whole one.
    parser.reset();
    if (received) attempt = 0;
    options.onState("reconnecting", lastError instanceof Error ? lastError.message : undefined);
    await sleep(backoff(attempt), signal);
    attempt += 1;
  }
}
