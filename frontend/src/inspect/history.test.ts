import { describe, expect, it } from "vitest";
import type { HistoryItem } from "./api";
import { eventKinds, historyFromEvent, mergeHistory } from "./history";

const entry = (seq: number, event = "signal", note: string | null = null): HistoryItem => ({
  seq,
  event,
  name: null,
  payload: null,
  created_at: "2025-11-22T10:00:00Z",
  state_before: "a",
  state_after: "b",
  status_after: "waiting",
  commands: [],
  note,
});

describe("history", () => {
  it("merges by seq, in order, without duplicates", () => {
    const merged = mergeHistory([entry(1), entry(3)], [entry(2), entry(3, "signal", "again"), entry(4)]);
    expect(merged.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(merged[2].note).toBe("again");
    const same = [entry(1)];
    expect(mergeHistory(same, [])).toBe(same);
  });

  it("offers the known event kinds and any other seen", () => {
    expect(eventKinds([entry(1, "zap"), entry(2, "start")])).toEqual([
      "start",
      "signal",
      "activity",
      "timer",
      "child",
      "cancel",
      "zap",
    ]);
  });

  it("reads an entry from an event's data", () => {
    expect(historyFromEvent(JSON.stringify(entry(7)))?.seq).toBe(7);
    expect(historyFromEvent('{"status":"completed"}')).toBeNull();
    expect(historyFromEvent("not json")).toBeNull();
  });
});
