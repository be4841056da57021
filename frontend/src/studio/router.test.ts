import { describe, expect, it } from "vitest";
import { parseRoute } from "./router";

describe("parseRoute", () => {
  it("opens the workflow list at the studio's root", () => {
    expect(parseRoute("/studio/")).toEqual({ page: "workflows" });
    expect(parseRoute("/studio/workflows")).toEqual({ page: "workflows" });
  });

  it("reads a workflow id and an optional run to replay", () => {
    expect(parseRoute("/studio/workflows/abc")).toEqual({ page: "workflow", id: "abc" });
    expect(parseRoute("/studio/workflows/abc", "?run=r1")).toEqual({
      page: "workflow",
      id: "abc",
      runId: "r1",
    });
  });

  it("reads knowledge base ids as numbers and refuses anything else", () => {
    expect(parseRoute("/studio/knowledge/12")).toEqual({ page: "knowledge-base", id: 12 });
    expect(parseRoute("/studio/knowledge/x").page).toBe("not-found");
    expect(parseRoute("/elsewhere").page).toBe("not-found");
  });
});
