// The dashboard's rows, shaped for the charts: one row per bar or point,
// one key per series. Pure, so the shaping is tested without drawing.

import type { Dashboard } from "./api";
import { STATUSES, type Status } from "./filters";
import { failureRate } from "./format";
import { clock } from "./time";

export const JOB_STATES = ["available", "scheduled", "running", "retrying", "dead"] as const;

export type WorkflowBar = { label: string; kind: string; state: string; total: number } & Record<Status, number>;

/** One bar per kind and state, stacked by status; kinds together, biggest states first. */
export function workflowBars(rows: Dashboard["workflows"]): WorkflowBar[] {
  const bars = new Map<string, WorkflowBar>();
  for (const r of rows) {
    const label = `${r.kind} · ${r.state}`;
    let bar = bars.get(label);
    if (!bar) {
      bar = { label, kind: r.kind, state: r.state, total: 0, running: 0, waiting: 0, completed: 0, failed: 0, cancelled: 0 };
      bars.set(label, bar);
    }
    if ((STATUSES as readonly string[]).includes(r.status)) bar[r.status] += r.count;
    bar.total += r.count;
  }
  return [...bars.values()].sort((a, b) => a.kind.localeCompare(b.kind) || b.total - a.total || a.state.localeCompare(b.state));
}

export type QueueBar = { label: string; total: number; oldest_age_seconds: number } & Record<string, number | string>;

/** One bar per queue and job kind: depth stacked by job state, and the oldest job's age. */
export function queueBars(rows: Dashboard["queue"]): QueueBar[] {
  const bars = new Map<string, QueueBar>();
  for (const r of rows) {
    const label = r.queue === "default" ? r.kind : `${r.queue}/${r.kind}`;
    let bar = bars.get(label);
    if (!bar) {
      bar = { label, total: 0, oldest_age_seconds: 0 };
      for (const s of JOB_STATES) bar[s] = 0;
      bars.set(label, bar);
    }
    bar[r.state] = (Number(bar[r.state]) || 0) + r.count;
    bar.total += r.count;
    bar.oldest_age_seconds = Math.max(bar.oldest_age_seconds, r.oldest_age_seconds ?? 0);
  }
  return [...bars.values()].sort((a, b) => a.label.localeCompare(b.label));
}

export interface ThroughputPoint {
  minute: string;
  label: string;
  completed: number;
  failed: number;
  cancelled: number;
  transitions: number;
  activities_failed: number;
  /** failed / (completed + failed), %, or null when nothing finished that minute. */
  failure_rate: number | null;
}

/** The last hour, minute by minute, oldest first, with the failure rate. */
export function throughputPoints(rows: Dashboard["throughput"]): ThroughputPoint[] {
  return [...rows]
    .sort((a, b) => Date.parse(a.minute) - Date.parse(b.minute))
    .map((r) => ({ ...r, label: clock(r.minute), failure_rate: failureRate(r.completed, r.failed) }));
}

/** Totals over the hour: finished, failed and the overall failure rate. */
export function throughputTotals(points: ThroughputPoint[]) {
  const completed = points.reduce((n, p) => n + p.completed, 0);
  const failed = points.reduce((n, p) => n + p.failed, 0);
  const cancelled = points.reduce((n, p) => n + p.cancelled, 0);
  return { completed, failed, cancelled, failure_rate: failureRate(completed, failed) };
}

/** LLM spend per day, oldest first; the day as YYYY-MM-DD. */
export function spendBars(rows: Dashboard["llm_spend"]) {
  return [...rows]
    .map((r) => ({ ...r, label: r.day.slice(0, 10) }))
    .sort((a, b) => a.label.localeCompare(b.label));
}
