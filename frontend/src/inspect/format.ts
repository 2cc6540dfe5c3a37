// Small pure helpers for showing values: JSON, numbers, money, and the
// JSON an operator types.

/** Pretty JSON; `undefined` shows as "null". */
export function prettyJson(value: unknown): string {
  if (value === undefined) return "null";
  try {
    return JSON.stringify(value, null, 2) ?? "null";
  } catch {
    return String(value);
  }
}

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

/** Reads JSON typed into a text box; blank means `null`. */
export function parseJsonInput(text: string): Parsed {
  if (text.trim() === "") return { ok: true, value: null };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    return { ok: false, error: `The payload is not valid JSON: ${detail}` };
  }
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** 12,345; "–" for no number. */
export function count(n: number | null | undefined): string {
  return n === null || n === undefined || Number.isNaN(n) ? "–" : integer.format(n);
}

/** $0.0123 for small amounts, $12.35 from a dollar up, $0.00 for nothing; "–" for none. */
export function usd(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const digits = Math.abs(n) >= 1 || n === 0 ? 2 : 4;
  return `$${n.toFixed(digits)}`;
}

/** 850 ms, 2.4 s. */
export function millis(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`;
}

/** failed / (completed + failed) as a percentage, or null when nothing finished. */
export function failureRate(completed: number, failed: number): number | null {
  const finished = completed + failed;
  return finished === 0 ? null : Math.round((failed / finished) * 1000) / 10;
}

/** A one-line preview of a value, cut to `max` characters. */
export function preview(value: unknown, max = 80): string {
  const text = typeof value === "string" ? value : JSON.stringify(value ?? null);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
