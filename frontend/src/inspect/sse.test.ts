import { describe, expect, it } from "vitest";
import { SseParser, parseAll, type SseEvent } from "./sse";

const STREAM =
  ": keep-alive\n" +
  "id: 1\nevent: start\ndata: {\"seq\":1}\n\n" +
  "id: 2\r\nevent: signal\r\ndata: line one\r\ndata: line two\r\n\r\n" +
  "event: end\rdata: {\"status\":\"completed\"}\r\r";

const EXPECTED: SseEvent[] = [
  { type: "start", data: '{"seq":1}', id: "1" },
  { type: "signal", data: "line one\nline two", id: "2" },
  { type: "end", data: '{"status":"completed"}', id: "2" },
];

describe("SseParser", () => {
  it("parses LF, CRLF and CR line endings, multi-line data and ids", () => {
    expect(parseAll(STREAM)).toEqual(EXPECTED);
  });

  it("gives the same events whatever the chunk boundaries", () => {
    // Every split into two chunks, and one character at a time.
    for (let i = 0; i <= STREAM.length; i++) {
      expect(parseAll([STREAM.slice(0, i), STREAM.slice(i)]), `split at ${i}`).toEqual(EXPECTED);
    }
    expect(parseAll(STREAM.split(""))).toEqual(EXPECTED);
  });

  it("does not read a CRLF split between chunks as two line ends", () => {
    const events = parseAll(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
    expect(events).toEqual([{ type: "message", data: "a\nb", id: "" }]);
  });

  it("reports comments and skips them", () => {
    const comments: string[] = [];
    const events: SseEvent[] = [];
    const parser = new SseParser((e) => events.push(e), (c) => comments.push(c));
    parser.push(":keep-alive\n: second\ndata: x\n\n");
    expect(comments).toEqual(["keep-alive", "second"]);
    expect(events).toEqual([{ type: "message", data: "x", id: "" }]);
  });

  it("strips one leading space only, and takes a field without a colon as empty", () => {
    expect(parseAll("data:  two spaces\ndata\ndata:none\n\n")).toEqual([
      { type: "message", data: " two spaces\n\nnone", id: "" },
    ]);
  });

  it("keeps the last id for the next events and for resuming", () => {
    const events: SseEvent[] = [];
    const parser = new SseParser((e) => events.push(e));
    parser.push("id: 7\ndata: a\n\ndata: b\n\n");
    expect(events.map((e) => e.id)).toEqual(["7", "7"]);
    expect(parser.lastEventId).toBe("7");
    // An id-only block moves the id without dispatching anything.
    parser.push("id: 9\n\n");
    expect(events).toHaveLength(2);
    expect(parser.lastEventId).toBe("9");
    // An id with NUL is ignored.
    parser.push("id: 1\u00002\ndata: c\n\n");
    expect(events[2].id).toBe("9");
  });

  it("dispatches nothing for a block without data, and resets the type", () => {
    expect(parseAll("event: lonely\n\ndata: x\n\n")).toEqual([{ type: "message", data: "x", id: "" }]);
  });

  it("holds an unfinished event until its blank line arrives", () => {
    const events: SseEvent[] = [];
    const parser = new SseParser((e) => events.push(e));
    parser.push("id: 3\nevent: timer\ndata: {");
    expect(events).toEqual([]);
    parser.push('"a":1}\n');
    expect(events).toEqual([]);
    parser.push("\n");
    expect(events).toEqual([{ type: "timer", data: '{"a":1}', id: "3" }]);
  });

  it("drops a half-received event on reset but keeps the resume id", () => {
    const events: SseEvent[] = [];
    const parser = new SseParser((e) => events.push(e));
    parser.push("id: 4\ndata: done\n\nid: 5\ndata: half");
    parser.reset();
    parser.push("\n\n");
    expect(events).toEqual([{ type: "message", data: "done", id: "4" }]);
    expect(parser.lastEventId).toBe("4");
  });

  it("reads retry, ignores unknown fields and a leading BOM", () => {
    const events: SseEvent[] = [];
    const parser = new SseParser((e) => events.push(e));
    parser.push("\ufeffretry: 1500\nfoo: bar\nretry: soon\ndata: x\n\n");
    expect(parser.retry).toBe(1500);
    expect(events).toEqual([{ type: "message", data: "x", id: "" }]);
  });
});
