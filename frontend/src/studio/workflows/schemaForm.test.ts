import { describe, expect, it } from "vitest";
import { errorTree, nodeLevelProblems, simplifySchema, uiSchemaFor } from "./schemaForm";

describe("simplifySchema", () => {
  it("unwraps pydantic's Optional and keeps the outer title and description", () => {
    const schema = {
      properties: {
        top_p: {
          anyOf: [{ type: "number", maximum: 1 }, { type: "null" }],
          default: null,
          title: "Top p",
          description: "nucleus",
        },
        mode: { enum: ["vector", "hybrid"], default: "hybrid", title: "Mode" },
      },
    };
    expect(simplifySchema(schema)).toEqual({
      properties: {
        top_p: { type: "number", maximum: 1, title: "Top p", description: "nucleus" },
        mode: { enum: ["vector", "hybrid"], default: "hybrid", title: "Mode" },
      },
    });
  });

  it("leaves a real choice between two types alone", () => {
    const body = { anyOf: [{ type: "string" }, { type: "object" }, { type: "null" }] };
    expect(simplifySchema(body)).toEqual(body);
  });
});

describe("uiSchemaFor", () => {
  it("gives template fields the template widget and long text a text area", () => {
    const ui = uiSchemaFor(
      { properties: { prompt: { type: "string" }, notes: { type: "string", maxLength: 5000 }, n: { type: "integer" } } },
      ["prompt"],
    );
    expect(ui.prompt).toEqual({ "ui:widget": "template" });
    expect(ui.notes).toEqual({ "ui:widget": "textarea" });
    expect(ui.n).toBeUndefined();
  });

  it("reaches fields of every list item", () => {
    const ui = uiSchemaFor({ properties: { cases: { type: "array" } } }, ["cases.*.left", "cases.*.right"]);
    expect(ui.cases).toEqual({
      items: { left: { "ui:widget": "template" }, right: { "ui:widget": "template" } },
    });
  });
});

describe("errorTree", () => {
  it("places each problem on its field, nested paths included", () => {
    const problems = [
      { code: "invalid_config", message: "required", node_id: "a", field: "config.prompt" },
      { code: "invalid_config", message: "bad id", node_id: "a", field: "config.cases.0.id" },
      { code: "unreachable_node", message: "no path", node_id: "a" },
    ];
    expect(errorTree(problems)).toEqual({
      prompt: { __errors: ["required"] },
      cases: { "0": { id: { __errors: ["bad id"] } } },
    });
    expect(nodeLevelProblems(problems).map((p) => p.code)).toEqual(["unreachable_node"]);
  });
});
