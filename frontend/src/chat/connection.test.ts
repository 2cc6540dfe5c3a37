import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ChatConnection,
  backoffDelay,
  convertMessage,
  type ChatEntry,
  type ConnectionOptions,
  type ServerMessage,
  type SocketLike,
} from "./connection";

// ---------------------------------------------------------------------------
// Fakes

class FakeSocket implements SocketLike {
  readyState = 0;
  readonly sent: Record<string, unknown>[] = [];
  closedByClient = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("socket not open");
    this.sent.push(JSON.parse(data));
  }
  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }

  // What the server or the network does.
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  /** A connection that never opens (refused, 401 on upgrade...). */
  fail(): void {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code: 1006 });
  }
  /** The server (or the network) closes an open connection. */
  drop(): void {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }
  frames(type: string): Record<string, unknown>[] {
    return this.sent.filter((f) => f.type === type);
  }
}

type Route = (url: string, init?: RequestInit) => Response | Promise<Response>;

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

interface Harness {
  conn: ChatConnection;
  sockets: FakeSocket[];
  last: () => FakeSocket;
  fetch: ReturnType<typeof vi.fn>;
  calls: (prefix: string) => { url: string; init?: RequestInit }[];
}

function msg(seq: number, over: Partial<ServerMessage> = {}): ServerMessage {
  return {
    seq,
    role: "assistant",
    kind: "reply",
    agent: "greeter",
    content: `message ${seq}`,
    widget: null,
    client_id: null,
    created_at: `2026-11-22T10:00:${String(seq).padStart(2, "0")}Z`,
    ...over,
  };
}

function setup(opts: { route?: Route; options?: ConnectionOptions; noSocket?: boolean } = {}): Harness {
  const sockets: FakeSocket[] = [];
  let ids = 0;
  const route: Route =
    opts.route ??
    ((url) => {
      if (url.startsWith("/api/chat/messages")) return json({ messages: [], last_seq: 0 });
      if (url.startsWith("/api/inbox")) return json({ items: [] });
      return json({});
    });
  const fetch = vi.fn(async (url: string, init?: RequestInit) => route(url, init));
  const conn = new ChatConnection({
    wsUrl: "ws://test/ws",
    createSocket: opts.noSocket
      ? null
      : (url) => {
          const s = new FakeSocket(url);
          sockets.push(s);
          return s;
        },
    fetch,
    random: () => 0.5,
    newId: () => `cid-${++ids}`,
    isOnline: () => true,
    ...opts.options,
  });
  return {
    conn,
    sockets,
    last: () => sockets[sockets.length - 1],
    fetch,
    calls: (prefix) =>
      fetch.mock.calls
        .filter(([url]) => (prefix.endsWith("/message") ? url === prefix : (url as string).startsWith(prefix)))
        .map(([url, init]) => ({ url: url as string, init: init as RequestInit | undefined })),
  };
}

const seqs = (c: ChatConnection) => c.getState().messages.map((m) => m.seq);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

// ---------------------------------------------------------------------------

describe("backoff", () => {
  it("grows exponentially with jitter and is capped near 10 s", () => {
    const mid = () => 0.5;
    expect(backoffDelay(0, mid)).toBe(375); // 500 * (0.5 + 0.25)
    expect(backoffDelay(1, mid)).toBe(750);
    expect(backoffDelay(2, mid)).toBe(1500);
    expect(backoffDelay(10, mid)).toBe(7500);
    expect(backoffDelay(50, () => 1)).toBe(10_000);
    expect(backoffDelay(50, () => 0)).toBe(5_000);
    for (let a = 0; a < 40; a++) expect(backoffDelay(a, Math.random)).toBeLessThanOrEqual(10_000);
  });
});

describe("hello and resume", () => {
  it("sends hello with 0 first, then with the last seq seen after a reconnect", async () => {
    const h = setup();
    h.conn.start();
    expect(h.conn.getState().connection).toBe("connecting");
    expect(h.sockets).toHaveLength(1);
    expect(h.last().url).toBe("ws://test/ws");
    h.last().open();
    expect(h.last().sent[0]).toEqual({ type: "hello", after: 0 });
    expect(h.conn.getState().connection).toBe("connected");

    h.last().receive({ type: "message", message: msg(1) });
    h.last().receive({ type: "message", message: msg(2) });
    expect(h.conn.getState().lastSeq).toBe(2);

    h.last().drop();
    expect(h.conn.getState().connection).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(backoffDelay(0, () => 0.5));
    expect(h.sockets).toHaveLength(2);
    h.last().open();
    expect(h.last().sent[0]).toEqual({ type: "hello", after: 2 });
    expect(h.conn.getState().connection).toBe("connected");
  });
});

describe("merging frames", () => {
  it("keeps messages ordered by seq without duplicates", () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    const s = h.last();
    s.receive({ type: "message", message: msg(2) });
    s.receive({ type: "message", message: msg(1) });
    s.receive({ type: "message", message: msg(2) });
    s.receive({ type: "message", message: msg(3) });
    s.receive({ type: "message", message: msg(1) });
    expect(seqs(h.conn)).toEqual([1, 2, 3]);
    expect(h.conn.getState().lastSeq).toBe(3);
    // A later version of the same seq (e.g. streamed text) replaces it in place.
    s.receive({ type: "message", message: msg(3, { content: "message 3, finished" }) });
    expect(seqs(h.conn)).toEqual([1, 2, 3]);
    expect(h.conn.getState().messages[2].content).toBe("message 3, finished");
  });

  it("does not advance the last seq over a gap, and fills it over HTTP", async () => {
    const h = setup({
      route: (url) => {
        if (url.startsWith("/api/chat/messages?after=1")) return json({ messages: [msg(2)], last_seq: 2 });
        if (url.startsWith("/api/inbox")) return json({ items: [] });
        return json({ messages: [], last_seq: 0 });
      },
    });
    h.conn.start();
    h.last().open();
    h.last().receive({ type: "message", message: msg(1) });
    h.last().receive({ type: "message", message: msg(3) });
    expect(seqs(h.conn)).toEqual([1, 3]);
    expect(h.conn.getState().lastSeq).toBe(1);
    await vi.advanceTimersByTimeAsync(1_600);
    expect(h.calls("/api/chat/messages")[0].url).toBe("/api/chat/messages?after=1&limit=100");
    expect(seqs(h.conn)).toEqual([1, 2, 3]);
    expect(h.conn.getState().lastSeq).toBe(3);
  });

  it("matches an ack and then the echoed message to the optimistic message", () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    h.last().receive({ type: "message", message: msg(1) });
    const id = h.conn.send("  hello there  ");
    expect(id).toBe("cid-1");
    let m = h.conn.getState().messages;
    expect(m).toHaveLength(2);
    expect(m[1]).toMatchObject({ seq: null, status: "pending", content: "hello there", key: "c:cid-1" });
    expect(h.last().frames("message")).toEqual([{ type: "message", content: "hello there", client_id: "cid-1" }]);

    h.last().receive({ type: "ack", client_id: "cid-1", seq: 2, duplicate: false });
    m = h.conn.getState().messages;
    expect(m).toHaveLength(2);
    expect(m[1]).toMatchObject({ seq: 2, status: "sent", key: "c:cid-1" });
    expect(h.conn.getState().queued).toBe(0);

    h.last().receive({ type: "message", message: msg(2, { role: "user", kind: "message", client_id: "cid-1", content: "hello there" }) });
    h.last().receive({ type: "message", message: msg(3) });
    m = h.conn.getState().messages;
    expect(m.map((e) => e.key)).toEqual(["s:1", "c:cid-1", "s:3"]);
    expect(h.conn.getState().lastSeq).toBe(3);
  });

  it("matches the echoed message to the optimistic one when it comes before the ack", () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    h.conn.send("first");
    h.last().receive({ type: "message", message: msg(1, { role: "user", kind: "message", client_id: "cid-1", content: "first" }) });
    h.last().receive({ type: "ack", client_id: "cid-1", seq: 1, duplicate: false });
    const m = h.conn.getState().messages;
    expect(m).toHaveLength(1);
    expect(m[0]).toMatchObject({ seq: 1, status: "sent", key: "c:cid-1" });
  });

  it("takes typing, progress, inbox and snapshot frames", () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    const progress = {
      current_step: "discovery",
      steps: [
        { name: "greeting", status: "done" },
        { name: "discovery", status: "current" },
        { name: "brain_dump", status: "upcoming" },
        { name: "completed", status: "upcoming" },
      ],
      percent: 33,
    };
    h.last().receive({ type: "snapshot", state: { current_step: "discovery", typing: true }, progress, last_seq: 0 });
    expect(h.conn.getState()).toMatchObject({ typing: true, progress, completed: false });
    h.last().receive({ type: "typing", typing: false });
    expect(h.conn.getState().typing).toBe(false);
    const item = { id: "a", title: "Call mom", due_date: null, tags: ["family"], created_at: "2026-11-22T10:00:00Z" };
    h.last().receive({ type: "inbox", items: [item] });
    h.last().receive({ type: "inbox", items: [item, { ...item, id: "b", title: "Pay rent", created_at: "2026-11-22T10:00:01Z" }] });
    expect(h.conn.getState().inbox.map((i) => i.title)).toEqual(["Call mom", "Pay rent"]);
    h.last().receive({ type: "progress", progress: { ...progress, current_step: "completed", percent: 100 } });
    expect(h.conn.getState().completed).toBe(true);
  });
});

describe("reconnecting", () => {
  it("reconnects with growing backoff and resumes from the last seq", async () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    h.last().receive({ type: "message", message: msg(1) });
    h.last().drop();
    expect(h.conn.getState().connection).toBe("reconnecting");

    // attempt 0: 375 ms (random 0.5)
    await vi.advanceTimersByTimeAsync(374);
    expect(h.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.sockets).toHaveLength(2);
    h.last().fail();
    expect(h.conn.getState().connection).toBe("reconnecting");

    // attempt 1: 750 ms
    await vi.advanceTimersByTimeAsync(749);
    expect(h.sockets).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.sockets).toHaveLength(3);
    h.last().open();
    expect(h.last().sent[0]).toEqual({ type: "hello", after: 1 });
    h.last().receive({ type: "message", message: msg(2) });
    expect(seqs(h.conn)).toEqual([1, 2]);

    // A connection that worked resets the backoff.
    h.last().drop();
    await vi.advanceTimersByTimeAsync(375);
    expect(h.sockets).toHaveLength(4);
    h.last().open();
    expect(h.last().sent[0]).toEqual({ type: "hello", after: 2 });
  });

  it("counts a socket closed before any frame as a failed attempt", async () => {
    const h = setup({ route: () => json({ messages: [], last_seq: 0 }) });
    h.conn.start();
    for (const d of [375, 750]) {
      h.last().open(); // e.g. accepted, then closed: no snapshot ever came
      h.last().drop();
      await vi.advanceTimersByTimeAsync(d);
    }
    expect(h.calls("/api/chat/messages")).toHaveLength(0);
    h.last().open();
    h.last().drop();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.calls("/api/chat/messages")).toHaveLength(1);
    expect(h.conn.getState().connection).toBe("polling");
    h.conn.stop();
  });

  it("treats a socket that does not open in time as failed", async () => {
    const h = setup({ options: { connectTimeoutMs: 1_000 } });
    h.conn.start();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.sockets[0].closedByClient).toBe(true);
    expect(h.conn.getState().connection).toBe("reconnecting");
  });

  it("reconnects a socket that went silent", async () => {
    const h = setup({ options: { idleTimeoutMs: 5_000 } });
    h.conn.start();
    h.last().open();
    await vi.advanceTimersByTimeAsync(4_000);
    h.last().receive({ type: "ping" });
    await vi.advanceTimersByTimeAsync(4_000);
    expect(h.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.sockets[0].closedByClient).toBe(true);
    await vi.advanceTimersByTimeAsync(375);
    expect(h.sockets).toHaveLength(2);
  });

  it("treats resync as a reconnect from the last seq", async () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    h.last().receive({ type: "message", message: msg(1) });
    h.last().receive({ type: "message", message: msg(2) });
    const first = h.last();
    first.receive({ type: "resync" });
    expect(first.closedByClient).toBe(true);
    expect(h.conn.getState().connection).toBe("reconnecting");
    // The server's own close after resync changes nothing more.
    first.drop();
    await vi.advanceTimersByTimeAsync(375);
    expect(h.sockets).toHaveLength(2);
    h.last().open();
    expect(h.last().sent[0]).toEqual({ type: "hello", after: 2 });
    expect(h.conn.getState().connection).toBe("connected");
  });

  it("answers a ping with a pong", () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    h.last().receive({ type: "ping" });
    expect(h.last().sent).toEqual([{ type: "hello", after: 0 }, { type: "pong" }]);
  });
});

describe("polling fallback", () => {
  function pollingRoute(log: { messages: ServerMessage[] }): Route {
    return (url, init) => {
      if (url.startsWith("/api/chat/messages")) {
        const after = Number(new URL(url, "http://x").searchParams.get("after"));
        const messages = log.messages.filter((m) => m.seq > after);
        return json({ messages, last_seq: messages.length ? messages[messages.length - 1].seq : after });
      }
      if (url === "/api/workflow/state") return json({ current_step: "greeting", typing: false });
      if (url === "/api/workflow/progress") {
        return json({ current_step: "greeting", steps: [{ name: "greeting", status: "current" }], percent: 0 });
      }
      if (url === "/api/inbox") return json({ items: [] });
      if (url === "/api/chat/message" && init?.method === "POST") {
        const body = JSON.parse(String(init.body));
        const seq = log.messages.length + 1;
        log.messages.push(msg(seq, { role: "user", kind: "message", client_id: body.client_id, content: body.content }));
        return json({ seq, duplicate: false }, 202);
      }
      return json({ error: { code: "not_found", message: "no" } }, 404);
    };
  }

  it("polls after three failed socket attempts, keeps trying the socket, and switches back", async () => {
    const log = { messages: [msg(1)] };
    const h = setup({ route: pollingRoute(log) });
    h.conn.start();
    h.last().fail(); // 1
    await vi.advanceTimersByTimeAsync(375);
    h.last().fail(); // 2
    await vi.advanceTimersByTimeAsync(750);
    expect(h.calls("/api/chat/messages")).toHaveLength(0);
    h.last().fail(); // 3: fall back
    await vi.advanceTimersByTimeAsync(0);
    expect(h.calls("/api/chat/messages")[0].url).toBe("/api/chat/messages?after=0&limit=100");
    expect(h.conn.getState().connection).toBe("polling");
    expect(seqs(h.conn)).toEqual([1]);
    expect(h.conn.getState().progress?.current_step).toBe("greeting");

    expect(h.sockets).toHaveLength(3);

    // New messages arrive by polling every 1.5 s.
    log.messages.push(msg(2));
    await vi.advanceTimersByTimeAsync(1_500);
    expect(seqs(h.conn)).toEqual([1, 2]);
    expect(h.calls("/api/chat/messages").at(-1)!.url).toBe("/api/chat/messages?after=1&limit=100");

    // The socket is still tried in the background (attempt 2: 1500 ms after
    // the 3rd failure); while it is opening, polling goes on.
    expect(h.sockets).toHaveLength(4);
    expect(h.conn.getState().connection).toBe("polling");
    h.last().open();
    expect(h.last().sent[0]).toEqual({ type: "hello", after: 2 });
    expect(h.conn.getState().connection).toBe("connected");

    // ...and polling stops.
    const polls = h.calls("/api/chat/messages").length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.calls("/api/chat/messages").length).toBe(polls);
  });

  it("polls at once when WebSocket is not supported", async () => {
    const log = { messages: [msg(1), msg(2)] };
    const h = setup({ route: pollingRoute(log), noSocket: true });
    h.conn.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.conn.getState().connection).toBe("polling");
    expect(seqs(h.conn)).toEqual([1, 2]);
    h.conn.send("over http");
    await vi.advanceTimersByTimeAsync(0);
    const posts = h.calls("/api/chat/message");
    expect(posts).toHaveLength(1);
    expect(JSON.parse(String(posts[0].init!.body))).toEqual({ content: "over http", client_id: "cid-1" });
    expect(h.conn.getState().messages.at(-1)).toMatchObject({ seq: 3, status: "sent" });
    await vi.advanceTimersByTimeAsync(1_500);
    expect(seqs(h.conn)).toEqual([1, 2, 3]);
    h.conn.stop();
  });

  it("says offline when polling fails too, and tries the socket at once when the server is back", async () => {
    let up = false;
    const h = setup({
      options: { backoffCapMs: 10_000 },
      route: (url) => {
        if (!up) throw new TypeError("Failed to fetch");
        if (url.startsWith("/api/chat/messages")) return json({ messages: [], last_seq: 0 });
        if (url === "/api/inbox") return json({ items: [] });
        return json({});
      },
    });
    h.conn.start();
    for (const d of [375, 750]) {
      h.last().fail();
      await vi.advanceTimersByTimeAsync(d);
    }
    h.last().fail();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.conn.getState().connection).toBe("offline");
    // The socket keeps failing for a while: the backoff grows.
    await vi.advanceTimersByTimeAsync(1_500);
    h.last().fail();
    await vi.advanceTimersByTimeAsync(3_000);
    h.last().fail();
    const n = h.sockets.length;
    // The server is back: the next poll succeeds and the socket is tried at once.
    up = true;
    await vi.advanceTimersByTimeAsync(1_500);
    expect(h.sockets.length).toBe(n + 1);
    h.last().open();
    expect(h.conn.getState().connection).toBe("connected");
    h.conn.stop();
  });

  it("goes back to sign-in when the session is gone", async () => {
    const h = setup({
      route: () => json({ error: { code: "unauthorized", message: "sign in" } }, 401),
      noSocket: true,
    });
    h.conn.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.conn.getState().unauthorized).toBe(true);
    const n = h.fetch.mock.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.fetch.mock.calls.length).toBe(n);
  });
});

describe("offline sends", () => {
  it("queues while offline and delivers once, with the same client id on every retry", async () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    h.last().receive({ type: "message", message: msg(1) });
    h.last().drop();

    const id = h.conn.send("sent while offline");
    expect(h.conn.getState().messages.at(-1)).toMatchObject({ status: "pending", clientId: id });
    expect(h.conn.getState().queued).toBe(1);

    // Back: after hello, the queued message goes with its id.
    await vi.advanceTimersByTimeAsync(375);
    h.last().open();
    expect(h.last().sent).toEqual([
      { type: "hello", after: 1 },
      { type: "message", content: "sent while offline", client_id: id },
    ]);
    // Lost again before the ack: it goes again, same id.
    h.last().drop();
    await vi.advanceTimersByTimeAsync(750);
    h.last().open();
    expect(h.last().sent).toEqual([
      { type: "hello", after: 1 },
      { type: "message", content: "sent while offline", client_id: id },
    ]);
    // The server had stored it the first time: duplicate ack.
    h.last().receive({ type: "ack", client_id: id, seq: 2, duplicate: true });
    expect(h.conn.getState().queued).toBe(0);
    expect(h.conn.getState().messages.map((m) => [m.seq, m.status])).toEqual([
      [1, "sent"],
      [2, "sent"],
    ]);
    // Not sent again on later reconnects.
    h.last().drop();
    await vi.advanceTimersByTimeAsync(375);
    h.last().open();
    expect(h.last().sent).toEqual([{ type: "hello", after: 2 }]);

    const all = h.sockets.flatMap((s) => s.frames("message"));
    expect(all).toHaveLength(2);
    expect(new Set(all.map((f) => f.client_id))).toEqual(new Set([id]));
  });

  it("sends queued messages one at a time, in order", () => {
    const h = setup();
    h.conn.start();
    const a = h.conn.send("one");
    const b = h.conn.send("two");
    h.last().open();
    expect(h.last().frames("message").map((f) => f.client_id)).toEqual([a]);
    h.last().receive({ type: "ack", client_id: a, seq: 1, duplicate: false });
    expect(h.last().frames("message").map((f) => f.client_id)).toEqual([a, b]);
    h.last().receive({ type: "ack", client_id: b, seq: 2, duplicate: false });
    expect(h.conn.getState().messages.map((m) => m.content)).toEqual(["one", "two"]);
  });

  it("retries over HTTP with the same client id until the server takes it", async () => {
    let posts = 0;
    const h = setup({
      noSocket: true,
      route: (url, init) => {
        if (url === "/api/chat/message" && init?.method === "POST") {
          posts++;
          if (posts === 1) throw new TypeError("Failed to fetch");
          if (posts === 2) return json({ error: { code: "rate_limited", message: "slow down" } }, 429, { "retry-after": "3" });
          return json({ seq: 1, duplicate: false }, 202);
        }
        if (url.startsWith("/api/chat/messages")) return json({ messages: [], last_seq: 0 });
        if (url === "/api/inbox") return json({ items: [] });
        return json({});
      },
    });
    h.conn.start();
    await vi.advanceTimersByTimeAsync(0);
    const id = h.conn.send("hello");
    await vi.advanceTimersByTimeAsync(0); // 1: network error
    await vi.advanceTimersByTimeAsync(1_500); // next tick: 2: 429, retry after 3 s
    expect(posts).toBe(2);
    await vi.advanceTimersByTimeAsync(2_900);
    expect(posts).toBe(2);
    await vi.advanceTimersByTimeAsync(200); // 3: accepted
    expect(posts).toBe(3);
    await vi.advanceTimersByTimeAsync(6_000);
    expect(posts).toBe(3);
    const bodies = h.calls("/api/chat/message").map((c) => JSON.parse(String(c.init!.body)).client_id);
    expect(bodies).toEqual([id, id, id]);
    expect(h.conn.getState().messages).toHaveLength(1);
    expect(h.conn.getState().messages[0]).toMatchObject({ seq: 1, status: "sent" });
    h.conn.stop();
  });

  it("marks a refused message as failed and does not retry it", () => {
    const h = setup();
    h.conn.start();
    h.last().open();
    const id = h.conn.send("x".repeat(10));
    h.last().receive({ type: "error", code: "validation_failed", message: "content is too long" });
    expect(h.conn.getState().messages[0]).toMatchObject({ clientId: id, status: "failed", error: "content is too long" });
    expect(h.conn.getState().queued).toBe(0);
  });

  it("keeps the outbox across reloads when given storage", () => {
    const store = new Map<string, string>();
    const storage = {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => void store.set(k, v),
      removeItem: (k: string) => void store.delete(k),
    };
    const h1 = setup({ options: { storage, storageKey: "k" } });
    h1.conn.start();
    const id = h1.conn.send("survive a reload");
    h1.conn.stop();

    const h2 = setup({ options: { storage, storageKey: "k" } });
    expect(h2.conn.getState().messages[0]).toMatchObject({ clientId: id, status: "pending" });
    h2.conn.start();
    h2.last().open();
    expect(h2.last().frames("message")).toEqual([{ type: "message", content: "survive a reload", client_id: id }]);
    h2.last().receive({ type: "ack", client_id: id, seq: 1, duplicate: false });
    expect(store.has("k")).toBe(false);
  });
});

describe("streamed replies", () => {
  const TURN = "wf-1/t2.agent";
  const piece = (offset: number, text: string, over: Record<string, unknown> = {}) => ({
    type: "stream",
    turn: TURN,
    attempt: 1,
    call: 1,
    offset,
    text,
    ...over,
  });
  /** A connected chat whose assistant is typing a reply. */
  function typing() {
    const h = setup();
    h.conn.start();
    h.last().open();
    h.last().receive({ type: "message", message: msg(1, { role: "user", kind: "message", agent: null }) });
    h.last().receive({ type: "typing", typing: true });
    return h;
  }
  const drafts = (c: ChatConnection) => c.getState().drafts.map((d) => d.text);

  it("grows a draft piece by piece at its offsets", () => {
    const h = typing();
    const s = h.last();
    expect(drafts(h.conn)).toEqual([]);
    s.receive(piece(0, "Nice to "));
    expect(h.conn.getState().drafts).toEqual([{ turn: TURN, attempt: 1, call: 1, text: "Nice to " }]);
    s.receive(piece(8, "meet you, "));
    s.receive(piece(18, "Al 😀!"));
    expect(drafts(h.conn)).toEqual(["Nice to meet you, Al 😀!"]);
    // Offsets count UTF-16 code units, as JavaScript strings do.
    s.receive(piece("Nice to meet you, Al 😀!".length, " Go on"));
    expect(drafts(h.conn)).toEqual(["Nice to meet you, Al 😀! Go on"]);
    // The stored messages are untouched: a draft is not a message.
    expect(seqs(h.conn)).toEqual([1]);
  });

  it("ignores duplicates and waits for a gap to fill when pieces come out of order", () => {
    const h = typing();
    const s = h.last();
    s.receive(piece(0, "Hello"));
    s.receive(piece(0, "Hello"));
    s.receive(piece(0, "Hel"));
    expect(drafts(h.conn)).toEqual(["Hello"]);
    s.receive(piece(11, " Alex"));
    s.receive(piece(16, "!"));
    expect(drafts(h.conn)).toEqual(["Hello"]);
    s.receive(piece(5, " there"));
    expect(drafts(h.conn)).toEqual(["Hello there Alex!"]);
    // An overlapping piece keeps what it agrees with and adds the rest.
    s.receive(piece(12, "Alex! How"));
    expect(drafts(h.conn)).toEqual(["Hello there Alex! How"]);
    s.receive(piece(5, " there"));
    expect(drafts(h.conn)).toEqual(["Hello there Alex! How"]);
  });

  it("starts the draft again for a restarted attempt or model call and ignores the older one's pieces", () => {
    const h = typing();
    const s = h.last();
    s.receive(piece(0, "I think you said "));
    s.receive(piece(17, "Bob"));
    s.receive(piece(0, "Hi Alex", { attempt: 2 }));
    expect(h.conn.getState().drafts).toEqual([{ turn: TURN, attempt: 2, call: 1, text: "Hi Alex" }]);
    // The failed attempt's late pieces change nothing.
    s.receive(piece(20, "!", { attempt: 1 }));
    s.receive(piece(0, "I think you said Bob!", { attempt: 1 }));
    expect(drafts(h.conn)).toEqual(["Hi Alex"]);
    // A corrected output (a later call of the same attempt) replaces it too,
    // even when its first piece is missing for now.
    s.receive(piece(2, " Alex, welcome", { attempt: 2, call: 2 }));
    expect(drafts(h.conn)).toEqual([]);
    s.receive(piece(0, "Hi", { attempt: 2, call: 2 }));
    expect(drafts(h.conn)).toEqual(["Hi Alex, welcome"]);
  });

  it("is replaced by the stored message, and the turn's late pieces are ignored", () => {
    const h = typing();
    const s = h.last();
    s.receive(piece(0, "Nice to meet"));
    expect(drafts(h.conn)).toEqual(["Nice to meet"]);
    s.receive({ type: "message", message: msg(2, { content: "Nice to meet you!" }) });
    expect(drafts(h.conn)).toEqual([]);
    expect(h.conn.getState().messages.map((m) => m.content)).toEqual(["message 1", "Nice to meet you!"]);
    // The last piece, late, after the message (typing is still on).
    expect(h.conn.getState().typing).toBe(true);
    s.receive(piece(12, " you!"));
    expect(drafts(h.conn)).toEqual([]);
    // The next turn streams again.
    s.receive(piece(0, "And", { turn: "wf-1/t3.agent" }));
    expect(drafts(h.conn)).toEqual(["And"]);
  });

  it("is dropped when typing ends, and nothing is drafted while the assistant is not typing", () => {
    const h = typing();
    const s = h.last();
    s.receive(piece(0, "Sorry, I"));
    s.receive({ type: "typing", typing: false });
    expect(drafts(h.conn)).toEqual([]);
    s.receive(piece(0, "Hello", { turn: "wf-1/t3.agent" }));
    expect(drafts(h.conn)).toEqual([]);
    // A reconnect's snapshot that says typing counts too.
    s.receive({ type: "snapshot", state: { typing: true }, progress: null, last_seq: 1 });
    s.receive(piece(0, "Hello", { turn: "wf-1/t3.agent" }));
    expect(drafts(h.conn)).toEqual(["Hello"]);
  });

  it("ignores malformed stream frames", () => {
    const h = typing();
    const s = h.last();
    s.receive(piece(-1, "x"));
    s.receive(piece(0.5, "x"));
    s.receive({ ...piece(0, ""), text: 42 });
    s.receive({ type: "stream", turn: TURN, offset: 0, text: "x" });
    s.receive(piece(0, "x", { turn: null }));
    expect(drafts(h.conn)).toEqual([]);
  });
});

describe("assistant-ui conversion", () => {
  it("turns an entry into a thread message with the widget as a data part", () => {
    const entry: ChatEntry = {
      key: "s:4",
      seq: 4,
      role: "assistant",
      kind: "reply",
      agent: "inbox_collector",
      content: "Here's what I caught:",
      widget: { type: "item_confirmation", items: [{ title: "Pay rent", due_date: "2026-12-01", tags: ["home"] }] },
      clientId: null,
      createdAt: "2026-11-22T10:00:00Z",
      status: "sent",
    };
    const like = convertMessage(entry);
    expect(like.id).toBe("s:4");
    expect(like.role).toBe("assistant");
    expect(like.content).toEqual([
      { type: "text", text: "Here's what I caught:" },
      { type: "data", name: "item_confirmation", data: entry.widget },
    ]);
    expect(like.metadata?.custom).toMatchObject({ seq: 4, kind: "reply", status: "sent" });

    const user = convertMessage({ ...entry, key: "c:x", role: "user", kind: "message", widget: null, seq: null, status: "pending" });
    expect(user.status).toBeUndefined();
    expect(user.metadata?.custom).toMatchObject({ seq: null, status: "pending" });
  });
});
