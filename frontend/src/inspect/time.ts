// Times as an operator reads them: "in 3 min", "2 h ago", and the exact
// local time for a title.

type Instant = Date | string | number;

function ms(t: Instant): number {
  return t instanceof Date ? t.getTime() : typeof t === "number" ? t : Date.parse(t);
}

/** A span of time, coarsest sensible unit: "42 s", "3 min", "5 h", "2 d". */
export function span(milliseconds: number): string {
  const s = Math.floor(Math.abs(milliseconds) / 1000);
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h`;
  return `${Math.floor(h / 24)} d`;
}

/** "in 3 min", "2 h ago", or "now" within a second; "" for no time. */
export function relative(t: Instant | null | undefined, now: Instant = Date.now()): string {
  if (t === null || t === undefined) return "";
  const target = ms(t);
  if (Number.isNaN(target)) return "";
  const diff = target - ms(now);
  if (Math.abs(diff) < 1000) return "now";
  return diff > 0 ? `in ${span(diff)}` : `${span(diff)} ago`;
}

/** Seconds as a duration: "42 s", "3 min 5 s", "2 h 10 min", "3 d 4 h". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return s % 60 ? `${min} min ${s % 60} s` : `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 24) return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** The local time, "2025-11-22 09:36:12", or "" for no time. */
export function absolute(t: Instant | null | undefined): string {
  if (t === null || t === undefined) return "";
  const d = new Date(ms(t));
  if (Number.isNaN(d.getTime())) return "";
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** "09:36" local: a minute on a chart's axis. */
export function clock(t: Instant): string {
  const d = new Date(ms(t));
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
