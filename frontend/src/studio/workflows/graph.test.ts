import { describe, expect, it } from "vitest";
import {
  addNode,
  availableVariables,
  connect,
  connectionProblem,
  copySelection,
  outputHandles,
  paste,
  problemsByNode,
  removeItems,
  uniqueNodeId,
  upstreamOf,
} from "./graph";
import { historyCommit, historyPush, historyRedo, historyStart, historyUndo } from "./history";
import { autoLayout } from "./layout";
import type { Graph, GraphNode, NodeTypeInfo } from "./types";

function info(type: string, category: NodeTypeInfo["category"], outputs: Record<string, string>): NodeTypeInfo {
  return {
    type,
    version: 1,
    category,
    title: type,
    description: "",
    config_schema: {
      type: "object",
      properties: { prompt: { type: "string", default: "{{ trigger.text }}" }, n: { type: "integer" } },
    },
    outputs,
    template_fields: ["prompt"],
  };
}

const TYPES = new Map<string, NodeTypeInfo>([
  ["message_trigger", info("message_trigger", "trigger", { text: "string", chat_id: "string" })],
  ["knowledge_retrieval", info("knowledge_retrieval", "processing", { context: "string" })],
  ["llm", info("llm", "processing", { text: "string" })],
  ["set_variable", info("set_variable", "processing", { values: "object" })],
  ["reply", info("reply", "output", { text: "string" })],
]);

function node(id: string, type: string, config: Record<string, unknown> = {}): GraphNode {
  return { id, type, type_version: 1, name: id, config, position: { x: 0, y: 0 } };
}

function chain(): Graph {
  let graph: Graph = {
    format_version: 1,
    variables: { tone: "friendly" },
    nodes: [
      node("start", "message_trigger"),
      node("kb", "knowledge_retrieval"),
      node("setv", "set_variable", { assignments: [{ name: "lang", value: "zh" }] }),
      node("llm", "llm", { prompt: "{{ nodes.kb.context }}" }),
      node("answer", "reply"),
    ],
    edges: [],
  };
  for (const [source, target] of [
    ["start", "kb"],
    ["kb", "setv"],
    ["setv", "llm"],
    ["llm", "answer"],
  ]) {
    graph = connect(graph, { source, target, sourceHandle: "out", targetHandle: "in" });
  }
  return graph;
}

describe("handles", () => {
  it("follows the config's branches and adds error when failures are routed", () => {
    const condition = node("route", "condition", { cases: [{ id: "refund" }, { id: "ship" }] });
    expect(outputHandles(condition)).toEqual(["refund", "ship", "else"]);
    expect(outputHandles({ ...condition, policy: { on_error: "error_branch" } })).toEqual([
      "refund",
      "ship",
      "else",
      "error",
    ]);
    expect(outputHandles(node("done", "end"))).toEqual([]);
    expect(outputHandles(node("f", "sensitive_word_filter", { mode: "block" }))).toEqual(["out", "blocked"]);
    expect(outputHandles(node("f", "sensitive_word_filter", { mode: "mask" }))).toEqual(["out"]);
  });
});

describe("ids and new nodes", () => {
  it("numbers ids after the first and keeps them valid", () => {
    expect(uniqueNodeId("llm", [])).toBe("llm");
    expect(uniqueNodeId("llm", ["llm", "llm_2"])).toBe("llm_3");
    expect(uniqueNodeId("9x-y", [])).toBe("n_9x_y");
  });

  it("starts a node with its schema's defaults", () => {
    const [graph, id] = addNode(chain(), TYPES.get("llm") as NodeTypeInfo, { x: 10.4, y: 20.6 });
    const added = graph.nodes.find((n) => n.id === id);
    expect(id).toBe("llm_2");
    expect(added?.config).toEqual({ prompt: "{{ trigger.text }}" });
    expect(added?.position).toEqual({ x: 10, y: 21 });
  });
});

describe("connections", () => {
  it("refuses loops onto itself, edges into triggers and duplicates", () => {
    const graph = chain();
    const base = { sourceHandle: "out", targetHandle: "in" };
    expect(connectionProblem(graph, { ...base, source: "kb", target: "kb" }, TYPES)).toBe("self");
    expect(connectionProblem(graph, { ...base, source: "kb", target: "start" }, TYPES)).toBe("trigger");
    expect(connectionProblem(graph, { ...base, source: "kb", target: "setv" }, TYPES)).toBe("duplicate");
    expect(connectionProblem(graph, { ...base, source: "kb", target: "answer" }, TYPES)).toBeNull();
  });

  it("removes a node's edges with it", () => {
    const graph = removeItems(chain(), ["setv"]);
    expect(graph.nodes.map((n) => n.id)).not.toContain("setv");
    expect(graph.edges.some((e) => e.source === "setv" || e.target === "setv")).toBe(false);
    expect(graph.edges).toHaveLength(2);
  });
});

describe("variables offered to templates", () => {
  it("lists the trigger, upstream outputs, variables and the conversation, never downstream", () => {
    const paths = availableVariables(chain(), "llm", TYPES).map((v) => v.path);
    expect(paths).toEqual([
      "trigger.text",
      "trigger.chat_id",
      "nodes.kb.context",
      "nodes.setv.values",
      "vars.lang",
      "vars.tone",
      "conversation.history",
    ]);
    expect(availableVariables(chain(), "kb", TYPES).map((v) => v.path)).not.toContain("nodes.llm.text");
  });

  it("finds every node upstream through branches", () => {
    expect([...upstreamOf(chain(), "answer")].sort()).toEqual(["kb", "llm", "setv", "start"]);
    expect(upstreamOf(chain(), "start").size).toBe(0);
  });
});

describe("copy and paste", () => {
  it("pastes fresh ids, keeps inner edges and renames references between pasted nodes", () => {
    const graph = chain();
    const clipboard = copySelection(graph, ["kb", "setv", "llm"]);
    expect(clipboard.edges).toHaveLength(2);
    const [pasted, ids] = paste(graph, clipboard, { x: 40, y: 40 });
    expect(ids).toEqual(["kb_2", "setv_2", "llm_2"]);
    const llm = pasted.nodes.find((n) => n.id === "llm_2");
    expect(llm?.config.prompt).toBe("{{ nodes.kb_2.context }}");
    expect(llm?.position).toEqual({ x: 40, y: 40 });
    const inner = pasted.edges.filter((e) => ids.includes(e.source));
    expect(inner.map((e) => `${e.source}>${e.target}`)).toEqual(["kb_2>setv_2", "setv_2>llm_2"]);
    expect(new Set(pasted.edges.map((e) => e.id)).size).toBe(pasted.edges.length);
    // the copy is a copy: changing the paste leaves the original alone
    expect(graph.nodes.find((n) => n.id === "llm")?.config.prompt).toBe("{{ nodes.kb.context }}");
  });
});

describe("problems", () => {
  it("puts node problems on the node, edge problems on both ends, the rest on the graph", () => {
    const graph = chain();
    const byNode = problemsByNode(graph, [
      { code: "invalid_config", message: "bad", node_id: "llm", field: "config.prompt" },
      { code: "dangling_edge", message: "edge", edge_id: "e1" },
      { code: "no_trigger", message: "none" },
    ]);
    expect(byNode.get("llm")?.[0].field).toBe("config.prompt");
    expect(byNode.get("start")?.[0].code).toBe("dangling_edge");
    expect(byNode.get("kb")?.[0].code).toBe("dangling_edge");
    expect(byNode.get("")?.[0].code).toBe("no_trigger");
  });
});

describe("history", () => {
  it("undoes and redoes steps, and a new change clears the redo stack", () => {
    const a = chain();
    const b = removeItems(a, ["answer"]);
    const c = removeItems(b, ["llm"]);
    let history = historyPush(historyPush(historyStart(a), b), c);
    history = historyUndo(history);
    expect(history.present).toBe(b);
    history = historyRedo(history);
    expect(history.present).toBe(c);
    history = historyPush(historyUndo(history), a);
    expect(history.future).toHaveLength(0);
    expect(historyUndo(historyStart(a)).present).toBe(a);
  });

  it("records a drag as one step when it ends", () => {
    const a = chain();
    const moved1 = { ...a, nodes: a.nodes.map((n) => ({ ...n, position: { x: 1, y: 1 } })) };
    const moved2 = { ...a, nodes: a.nodes.map((n) => ({ ...n, position: { x: 2, y: 2 } })) };
    let history = historyPush(historyStart(a), moved1, false);
    history = historyPush(history, moved2, false);
    history = historyCommit(history, a);
    expect(history.past).toEqual([a]);
    expect(historyUndo(history).present).toBe(a);
  });
});

describe("auto-layout", () => {
  it("places a chain left to right without overlaps", () => {
    const laid = autoLayout(chain());
    const xs = laid.nodes.map((n) => n.position?.x ?? 0);
    expect([...xs].sort((p, q) => p - q)).toEqual(xs);
    expect(new Set(xs).size).toBe(xs.length);
  });
});
