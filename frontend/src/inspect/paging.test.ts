import { describe, expect, it } from "vitest";
import { FIRST_PAGE, currentCursor, hasPrevious, nextPage, pageNumber, previousPage } from "./paging";

describe("cursor paging", () => {
  it("starts on the first page with no cursor and nothing before it", () => {
    expect(currentCursor(FIRST_PAGE)).toBeNull();
    expect(pageNumber(FIRST_PAGE)).toBe(1);
    expect(hasPrevious(FIRST_PAGE)).toBe(false);
    expect(previousPage(FIRST_PAGE)).toBe(FIRST_PAGE);
  });

  it("goes forward with next_cursor and back along the same cursors", () => {
    const p2 = nextPage(FIRST_PAGE, "c1");
    const p3 = nextPage(p2, "c2");
    expect([currentCursor(p3), pageNumber(p3), hasPrevious(p3)]).toEqual(["c2", 3, true]);
    const back = previousPage(p3);
    expect([currentCursor(back), pageNumber(back)]).toEqual(["c1", 2]);
    const first = previousPage(back);
    expect([currentCursor(first), pageNumber(first), hasPrevious(first)]).toEqual([null, 1, false]);
    // Forward again from there gives the same page.
    expect(currentCursor(nextPage(first, "c1"))).toBe("c1");
  });

  it("stays on the last page when there is no next cursor", () => {
    const p2 = nextPage(FIRST_PAGE, "c1");
    expect(nextPage(p2, null)).toBe(p2);
    expect(nextPage(p2, undefined)).toBe(p2);
    expect(nextPage(p2, "")).toBe(p2);
  });
});
