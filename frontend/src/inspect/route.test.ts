import { describe, expect, it } from "vitest";
import { DASHBOARD_PATH, listPath, parseRoute, workflowPath } from "./route";

describe("routes", () => {
  it("reads the inspector's paths", () => {
    expect(parseRoute("/inspect")).toEqual({ page: "list" });
    expect(parseRoute("/inspect/")).toEqual({ page: "list" });
    expect(parseRoute("/inspect/workflows")).toEqual({ page: "list" });
    expect(parseRoute("/inspect/dashboard")).toEqual({ page: "dashboard" });
    expect(parseRoute("/inspect/dashboard/")).toEqual({ page: "dashboard" });
    expect(parseRoute("/inspect/workflows/0190c3e2-aaaa")).toEqual({ page: "workflow", id: "0190c3e2-aaaa" });
  });

  it("says not found for anything else", () => {
    for (const path of ["/", "/inspector", "/inspect/nope", "/inspect/workflows/a/b", "/inspect.html"]) {
      expect(parseRoute(path)).toEqual({ page: "not-found", path });
    }
  });

  it("builds paths that parse back", () => {
    expect(parseRoute(workflowPath("a b/c"))).toEqual({ page: "workflow", id: "a b/c" });
    expect(parseRoute(DASHBOARD_PATH)).toEqual({ page: "dashboard" });
    expect(listPath("?kind=x")).toBe("/inspect?kind=x");
    expect(parseRoute(listPath())).toEqual({ page: "list" });
  });
});
