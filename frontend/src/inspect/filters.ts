// The workflow list's filters, and how they travel: in the page's query
// string (so a link or a reload keeps them) and in the API's.

export const STATUSES = ["running", "waiting", "completed", "failed", "cancelled"] as const;
export type Status = (typeof STATUSES)[number];

export interface ListFilters {
  kind: string;
  /** "" for any status. */
  status: Status | "";
  state: string;
  /** Only open workflows whose deadline has passed. */
  overdue: boolean;
  /** Only workflows waiting on a person. */
  waiting: boolean;
  /** Text searched for in the business key. */
  q: string;
  /** Rows per page. */
  limit: number;
}

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 500;

export const NO_FILTERS: ListFilters = {
  kind: "",
  status: "",
  state: "",
  overdue: false,
  waiting: false,
  q: "",
  limit: DEFAULT_LIMIT,
};

export function isStatus(value: string): value is Status {
  return (STATUSES as readonly string[]).includes(value);
}

const TRUE = new Set(["1", "true", "yes", "on"]);

/** The filters a page's query string holds (unknown keys and values are ignored). */
export function filtersFromSearch(search: string): ListFilters {
  const p = new URLSearchParams(search);
  const status = p.get("status") ?? "";
  const limit = Number(p.get("limit"));
  return {
    kind: (p.get("kind") ?? "").trim(),
    status: isStatus(status) ? status : "",
    state: (p.get("state") ?? "").trim(),
    overdue: TRUE.has((p.get("overdue") ?? "").toLowerCase()),
    waiting: TRUE.has((p.get("waiting") ?? "").toLowerCase()),
    q: p.get("q") ?? "",
    limit: Number.isInteger(limit) && limit >= 1 && limit <= MAX_LIMIT ? limit : DEFAULT_LIMIT,
  };
}

/** The filters as query-string parameters, leaving out what is not set. */
function params(f: ListFilters): URLSearchParams {
  const p = new URLSearchParams();
  if (f.kind) p.set("kind", f.kind);
  if (f.status) p.set("status", f.status);
  if (f.state) p.set("state", f.state);
  if (f.overdue) p.set("overdue", "true");
  if (f.waiting) p.set("waiting", "true");
  const q = f.q.trim();
  if (q) p.set("q", q);
  if (f.limit !== DEFAULT_LIMIT) p.set("limit", String(f.limit));
  return p;
}

/** The page's query string for the filters: "" or "?kind=…&…". */
export function filtersToSearch(f: ListFilters): string {
  const s = params(f).toString();
  return s ? `?${s}` : "";
}

/** `GET /api/workflows`'s query string for the filters and one page. */
export function listQuery(f: ListFilters, cursor: string | null): string {
  const p = params(f);
  p.set("limit", String(f.limit));
  if (cursor) p.set("cursor", cursor);
  return p.toString();
}

/** Whether two sets of filters select the same workflows. */
export function sameFilters(a: ListFilters, b: ListFilters): boolean {
  return filtersToSearch(a) === filtersToSearch(b);
}
