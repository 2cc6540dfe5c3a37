import { describe, expect, it } from "vitest";
import { NO_FILTERS, filtersFromSearch, filtersToSearch, listQuery, sameFilters, type ListFilters } from "./filters";

const ALL: ListFilters = {
  kind: "onboarding",
  status: "waiting",
  state: "discovery",
  overdue: true,
  waiting: true,
  q: "user 42&x",
  limit: 10,
};

describe("filters in the query string", () => {
  it("round-trips every filter", () => {
    const search = filtersToSearch(ALL);
    expect(search).toBe("?kind=onboarding&status=waiting&state=discovery&overdue=true&waiting=true&q=user+42%26x&limit=10");
    expect(filtersFromSearch(search)).toEqual(ALL);
  });

  it("leaves out what is not set", () => {
    expect(filtersToSearch(NO_FILTERS)).toBe("");
    expect(filtersToSearch({ ...NO_FILTERS, q: "   " })).toBe("");
    expect(filtersToSearch({ ...NO_FILTERS, overdue: true })).toBe("?overdue=true");
    expect(filtersFromSearch("")).toEqual(NO_FILTERS);
  });

  it("ignores unknown statuses, keys and page sizes, and reads 1/true/on as true", () => {
    expect(filtersFromSearch("?limit=0").limit).toBe(50);
    expect(filtersFromSearch("?limit=501").limit).toBe(50);
    expect(filtersFromSearch("?limit=2.5").limit).toBe(50);
    expect(filtersFromSearch("?limit=500").limit).toBe(500);
    expect(filtersFromSearch("?status=sleeping&page=3&overdue=1&waiting=on")).toEqual({
      ...NO_FILTERS,
      overdue: true,
      waiting: true,
    });
    expect(filtersFromSearch("overdue=false&waiting=0")).toEqual(NO_FILTERS);
  });

  it("compares by what they select", () => {
    expect(sameFilters({ ...NO_FILTERS, q: " a " }, { ...NO_FILTERS, q: "a" })).toBe(true);
    expect(sameFilters(NO_FILTERS, { ...NO_FILTERS, kind: "x" })).toBe(false);
  });
});

describe("the API's query string", () => {
  it("adds the page size and the cursor", () => {
    expect(listQuery(NO_FILTERS, null)).toBe("limit=50");
    expect(listQuery({ ...NO_FILTERS, limit: 2 }, null)).toBe("limit=2");
    expect(listQuery({ ...NO_FILTERS, status: "failed", q: "k" }, "0190-abc")).toBe(
      "status=failed&q=k&limit=50&cursor=0190-abc",
    );
  });
});
