import { describe, expect, it } from "vitest";
import { absolute, clock, duration, relative, span } from "./time";

const NOW = Date.parse("2025-11-22T12:00:00Z");
const at = (seconds: number) => new Date(NOW + seconds * 1000).toISOString();

describe("relative", () => {
  it("says how far in the future", () => {
    expect(relative(at(42), NOW)).toBe("in 42 s");
    expect(relative(at(3 * 60 + 20), NOW)).toBe("in 3 min");
    expect(relative(at(5 * 3600), NOW)).toBe("in 5 h");
    expect(relative(at(47 * 3600), NOW)).toBe("in 47 h");
    expect(relative(at(90 * 86400), NOW)).toBe("in 90 d");
  });

  it("says how long ago", () => {
    expect(relative(at(-5), NOW)).toBe("5 s ago");
    expect(relative(at(-2 * 3600 - 59), NOW)).toBe("2 h ago");
    expect(relative(at(-3 * 86400), NOW)).toBe("3 d ago");
  });

  it("says now within a second, and nothing for no time", () => {
    expect(relative(at(0.4), NOW)).toBe("now");
    expect(relative(null, NOW)).toBe("");
    expect(relative(undefined, NOW)).toBe("");
    expect(relative("not a time", NOW)).toBe("");
  });

  it("takes dates, strings and numbers alike", () => {
    expect(relative(new Date(NOW + 60_000), new Date(NOW))).toBe("in 1 min");
    expect(relative(NOW - 60_000, NOW)).toBe("1 min ago");
  });
});

describe("span and duration", () => {
  it("floors to the coarsest unit", () => {
    expect(span(59_999)).toBe("59 s");
    expect(span(-3_600_000)).toBe("1 h");
  });

  it("writes durations with two units", () => {
    expect(duration(0)).toBe("0 s");
    expect(duration(42.4)).toBe("42 s");
    expect(duration(185)).toBe("3 min 5 s");
    expect(duration(180)).toBe("3 min");
    expect(duration(2 * 3600 + 600)).toBe("2 h 10 min");
    expect(duration(3 * 86400 + 4 * 3600)).toBe("3 d 4 h");
    expect(duration(-3)).toBe("0 s");
  });
});

describe("absolute and clock", () => {
  it("writes the local time", () => {
    const d = new Date(2025, 0, 5, 7, 3, 9);
    expect(absolute(d)).toBe("2025-01-05 07:03:09");
    expect(absolute(d.toISOString())).toBe("2025-01-05 07:03:09");
    expect(clock(d)).toBe("07:03");
    expect(absolute(null)).toBe("");
  });
});
