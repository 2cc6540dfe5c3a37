// A workflow's history as the page holds it: entries by sequence, merged
// from the first read and the live stream without duplicates.

import type { HistoryItem } from "./api";

/** The event kinds the engine records, in the order the filter lists them. */
export const EVENT_KINDS = ["start", "signal", "activity", "timer", "child", "cancel"];

/** `current` with `incoming` merged in, ordered by seq; a seq seen again replaces the old entry. */
export function mergeHistory(current: readonly HistoryItem[], incoming: readonly HistoryItem[]): HistoryItem[] {
  if (incoming.length === 0) return current as HistoryItem[];
  const bySeq = new Map<number, HistoryItem>();
  for (const item of current) bySeq.set(item.seq, item);
  for (const item of incoming) bySeq.set(item.seq, item);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/** The event kinds to offer in the filter: the known ones, then any other that occurs. */
export function eventKinds(items: readonly HistoryItem[]): string[] {
  const seen = new Set(EVENT_KINDS);
  const extra = new Set<string>();
  for (const item of items) if (!seen.has(item.event)) extra.add(item.event);
  return [...EVENT_KINDS, ...[...extra].sort()];
}

/** A history entry from an SSE event's data, or null if it is not one. */
export function historyFromEvent(data: string): HistoryItem | null {
  try {
    const item = JSON.parse(data) as HistoryItem;
    return typeof item === "object" && item !== null && typeof item.seq === "number" ? item : null;
  } catch {
    return null;
  }
}
