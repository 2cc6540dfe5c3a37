// Keyset paging with a cursor stack. The API gives only a `next_cursor`, so
// "previous" is the cursor of the page before, kept as we go forward.

export interface Paging {
  /** The cursor of every page visited, first page (`null`) first; the last is the current page. */
  readonly stack: readonly (string | null)[];
}

export const FIRST_PAGE: Paging = { stack: [null] };

/** The cursor that fetches the current page (`null` for the first). */
export function currentCursor(p: Paging): string | null {
  return p.stack[p.stack.length - 1] ?? null;
}

/** 1 for the first page. */
export function pageNumber(p: Paging): number {
  return p.stack.length;
}

export function hasPrevious(p: Paging): boolean {
  return p.stack.length > 1;
}

/** The page after the current one, given the current page's `next_cursor`. */
export function nextPage(p: Paging, nextCursor: string | null | undefined): Paging {
  if (!nextCursor) return p;
  return { stack: [...p.stack, nextCursor] };
}

/** The page before the current one (the first page stays first). */
export function previousPage(p: Paging): Paging {
  return hasPrevious(p) ? { stack: p.stack.slice(0, -1) } : p;
}
