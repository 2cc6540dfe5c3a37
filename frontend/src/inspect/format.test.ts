import { describe, expect, it } from "vitest";
import { queueBars, spendBars, throughputPoints, throughputTotals, workflowBars } from "./charts";
import { count, failureRate, millis, parseJsonInput, preview, prettyJson, usd } from "./format";

describe("format", () => {
  it("reads typed JSON, blank as null, and says why it is not JSON", () => {
    expect(parseJsonInput('{"a": [1, 2]}')).toEqual({ ok: true, value: { a: [1, 2] } });
    expect(parseJsonInput("  ")).toEqual({ ok: true, value: null });
    expect(parseJsonInput('"text"')).toEqual({ ok: true, value: "text" });
    const bad = parseJsonInput("{bad");
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toMatch(/^The payload is not valid JSON: /);
  });

  it("formats numbers, money, latency and JSON", () => {
    expect(count(1234567)).toBe("1,234,567");
    expect(count(null)).toBe("–");
    expect(usd(0.012345)).toBe("$0.0123");
    expect(usd(12.345)).toBe("$12.35");
    expect(usd(0)).toBe("$0.00");
    expect(usd(undefined)).toBe("–");
    expect(millis(850.4)).toBe("850 ms");
    expect(millis(2400)).toBe("2.4 s");
    expect(prettyJson({ a: 1 })).toBe('{\n  "a": 1\n}');
    expect(prettyJson(undefined)).toBe("null");
    expect(preview({ long: "x".repeat(100) }, 20)).toHaveLength(20);
  });

  it("computes the failure rate of what finished", () => {
    expect(failureRate(0, 0)).toBeNull();
    expect(failureRate(3, 1)).toBe(25);
    expect(failureRate(2, 1)).toBe(33.3);
  });
});

describe("chart rows", () => {
  it("stacks workflows by status per kind and state", () => {
    const bars = workflowBars([
      { kind: "onboarding", state: "discovery", status: "waiting", count: 3 },
      { kind: "onboarding", state: "discovery", status: "running", count: 2 },
      { kind: "onboarding", state: "done", status: "completed", count: 9 },
      { kind: "billing", state: "open", status: "failed", count: 1 },
    ]);
    expect(bars.map((b) => b.label)).toEqual(["billing · open", "onboarding · done", "onboarding · discovery"]);
    expect(bars[2]).toMatchObject({ running: 2, waiting: 3, completed: 0, total: 5 });
  });

  it("sums queue depth by state and keeps the oldest age", () => {
    const bars = queueBars([
      { queue: "default", kind: "activity", state: "available", count: 4, oldest_age_seconds: 12 },
      { queue: "default", kind: "activity", state: "dead", count: 1, oldest_age_seconds: 3600 },
      { queue: "llm", kind: "activity", state: "running", count: 2, oldest_age_seconds: null },
    ]);
    expect(bars.map((b) => b.label)).toEqual(["activity", "llm/activity"]);
    expect(bars[0]).toMatchObject({ available: 4, dead: 1, running: 0, total: 5, oldest_age_seconds: 3600 });
    expect(bars[1]).toMatchObject({ running: 2, oldest_age_seconds: 0 });
  });

  it("orders throughput by minute and adds the failure rate", () => {
    const row = { cancelled: 0, transitions: 5, activities_failed: 0 };
    const points = throughputPoints([
      { minute: "2025-11-22T10:01:00Z", completed: 1, failed: 1, ...row },
      { minute: "2025-11-22T10:00:00Z", completed: 0, failed: 0, ...row },
    ]);
    expect(points.map((p) => p.failure_rate)).toEqual([null, 50]);
    expect(throughputTotals(points)).toEqual({ completed: 1, failed: 1, cancelled: 0, failure_rate: 50 });
  });

  it("orders spend by day", () => {
    const row = { calls: 1, tokens_in: 1, tokens_out: 1, cost_usd: 0.5 };
    expect(spendBars([{ day: "2025-11-22", ...row }, { day: "2025-11-21T00:00:00Z", ...row }]).map((b) => b.label)).toEqual([
      "2025-11-21",
      "2025-11-22",
    ]);
  });
});
