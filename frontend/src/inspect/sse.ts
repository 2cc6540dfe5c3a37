// A Server-Sent Events parser, after the WHATWG "event stream" rules. The
// inspector reads `/api/workflows/{id}/events` with fetch (EventSource cannot
// send the bearer token), so it parses the stream itself.
//
// Feed it text in chunks of any size: a line, a CRLF pair or a field may be
// split anywhere between two chunks. Bytes are decoded before this (with a
// streaming TextDecoder, which also keeps multi-byte characters whole).

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` field, or "message" when there was none. */
  type: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last `id:` seen so far in the stream (it carries over events). */
  id: string;
}

export class SseParser {
  /** The id to resume from (`Last-Event-ID`), "" when none was seen. */
  lastEventId = "";
  /** The reconnection delay the server asked for (`retry:`), in ms. */
  retry: number | null = null;

  private buffer = "";
  /** The previous chunk ended with CR: a leading LF now belongs to it. */
  private afterCr = false;
  private started = false;
  private type = "";
  private data: string[] = [];
  private idBuffer = "";

  constructor(
    private readonly onEvent: (event: SseEvent) => void,
    private readonly onComment?: (text: string) => void,
  ) {}

  /** Feeds decoded text; dispatches every event it completes. */
  push(chunk: string): void {
    let text = chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.afterCr && text.startsWith("\n")) text = text.slice(1);
    this.afterCr = false;
    this.buffer += text;

    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end: number;
      let next: number;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        end = cr;
        if (cr + 1 < this.buffer.length) {
          next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
        } else {
          // CR at the very end: the line is complete, but an LF may follow
          // in the next chunk and must not count as an empty line.
          next = cr + 1;
          this.afterCr = true;
        }
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(this.buffer.slice(start, end));
      start = next;
    }
    this.buffer = this.buffer.slice(start);
  }

  /** Drops a half-received event (the connection ended in the middle). */
  reset(): void {
    this.buffer = "";
    this.afterCr = false;
    this.type = "";
    this.data = [];
    this.idBuffer = this.lastEventId;
  }

  private line(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) {
      this.onComment?.(line.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.type = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.idBuffer = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        // Unknown fields are ignored.
        break;
    }
  }

  private dispatch(): void {
    this.lastEventId = this.idBuffer;
    const data = this.data;
    const type = this.type;
    this.data = [];
    this.type = "";
    if (data.length === 0) return;
    this.onEvent({ type: type || "message", data: data.join("\n"), id: this.lastEventId });
  }
}

/** Parses a whole text at once (tests and small bodies). */
export function parseAll(text: string | string[]): SseEvent[] {
  const events: SseEvent[] = [];
  const parser = new SseParser((e) => events.push(e));
  for (const chunk of typeof text === "string" ? [text] : text) parser.push(chunk);
  return events;
}
