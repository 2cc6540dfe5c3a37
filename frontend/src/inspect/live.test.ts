import { describe, expect, it } from "vitest";
import { defaultBackoff, follow, type LiveState } from "./live";
import type { SseEvent } from "./sse";

const bytes = (s: string) => new TextEncoder().encode(s);

/** A body that gives these chunks, then ends (or errors, if `fail`). */
function body(chunks: (string | Uint8Array)[], fail = false): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i < chunks.length) {
        const chunk = chunks[i++];
        c.enqueue(typeof chunk === "string" ? bytes(chunk) : chunk);
      } else if (fail) c.error(new TypeError("network error"));
      else c.close();
    },
  });
}

class Refused extends Error {
  constructor(readonly status: number) {
    super(`refused ${status}`);
  }
}

function harness(responses: (() => ReadableStream<Uint8Array>)[], start: string | null = null) {
  const opened: (string | null)[] = [];
  const events: SseEvent[] = [];
  const states: LiveState[] = [];
  const sleeps: number[] = [];
  let finish: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const stop = follow({
    lastEventId: start,
    open: async (id) => {
      opened.push(id);
      const next = responses.shift();
      if (!next) {
        // Nothing more scripted: hang until stopped.
        finish();
        return new Promise(() => undefined);
      }
      return next();
    },
    onEvent: (e) => events.push(e),
    onState: (s) => {
      states.push(s);
      if (s === "ended" || s === "failed") finish();
    },
    isFatal: (e) => e instanceof Refused && (e.status === 401 || e.status === 404),
    backoff: (n) => n,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  return { opened, events, states, sleeps, finished, stop };
}

describe("follow", () => {
  it("reads events, then stops at end", async () => {
    const h = harness([() => body(["id: 1\nevent: start\ndata: {}\n\n", "event: end\ndata: {\"status\":\"completed\"}\n\n"])]);
    await h.finished;
    expect(h.events.map((e) => e.type)).toEqual(["start", "end"]);
    expect(h.states).toEqual(["connecting", "connected", "ended"]);
    expect(h.opened).toEqual([null]);
  });

  it("resumes after the last whole event when the connection drops", async () => {
    const h = harness(
      [
        () => body(["id: 1\nevent: start\ndata: a\n\nid: 2\nevent: sig", "nal\ndata: b\n\nid: 3\ndata: half"], true),
        () => body(["id: 3\nevent: timer\ndata: c\n\n"]),
        () => body(["event: end\ndata: {}\n\n"]),
      ],
      null,
    );
    await h.finished;
    expect(h.events.map((e) => [e.id, e.type, e.data])).toEqual([
      ["1", "start", "a"],
      ["2", "signal", "b"],
      ["3", "timer", "c"],
      ["3", "end", "{}"],
    ]);
    expect(h.opened).toEqual([null, "2", "3"]);
    expect(h.states).toEqual(["connecting", "connected", "reconnecting", "connected", "reconnecting", "connected", "ended"]);
    // Each connection that delivered something resets the backoff.
    expect(h.sleeps).toEqual([0, 0]);
  });

  it("starts after the given id and backs off while nothing gets through", async () => {
    const h = harness(
      [
        () => {
          throw new TypeError("offline");
        },
        () => body([]),
        () => body(["event: end\ndata: {}\n\n"]),
      ],
      "41",
    );
    await h.finished;
    expect(h.opened).toEqual(["41", "41", "41"]);
    expect(h.sleeps).toEqual([0, 1]);
  });

  it("gives up on a refused token or a missing workflow", async () => {
    const h = harness([
      () => {
        throw new Refused(401);
      },
    ]);
    await h.finished;
    expect(h.states).toEqual(["connecting", "failed"]);
    expect(h.opened).toHaveLength(1);
  });

  it("keeps multi-byte characters split across chunks whole", async () => {
    const all = bytes('data: "café ✓"\n\nevent: end\ndata: {}\n\n');
    const h = harness([() => body([all.slice(0, 11), all.slice(11, 13), all.slice(13)])]);
    await h.finished;
    expect(h.events[0].data).toBe('"café ✓"');
  });

  it("stops when asked", async () => {
    const h = harness([]);
    await h.finished;
    h.stop();
    expect(h.states).toEqual(["connecting"]);
  });
});

describe("defaultBackoff", () => {
  it("doubles from 500 ms up to 10 s, jittered into the upper half", () => {
    for (let n = 0; n < 10; n++) {
      const full = Math.min(10_000, 500 * 2 ** n);
      const d = defaultBackoff(n);
      expect(d).toBeGreaterThanOrEqual(full / 2);
      expect(d).toBeLessThanOrEqual(full);
    }
  });
});
