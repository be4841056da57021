// Pure graph logic of the editor: handles, ids, copy/paste, deletion, upstream nodes and the
// template variables a node may read. No React here; graph.test.ts covers it.
import { DEFAULT_HANDLE, ERROR_HANDLE } from "../../nodes/types";
import { nodeUi } from "../../nodes";
import type { Graph, GraphEdge, GraphNode, NodeTypeInfo, Position, Problem } from "./types";

export const EMPTY_GRAPH: Graph = { format_version: 1, variables: {}, nodes: [], edges: [] };

/** Output handles of a node: its branches, plus `error` when its policy routes failures. */
export function outputHandles(node: GraphNode): string[] {
  const ui = nodeUi(node.type);
  if (ui.terminal) return [];
  const branches = ui.branches ? ui.branches(node.config ?? {}) : [DEFAULT_HANDLE];
  return node.policy?.on_error === "error_branch" ? [...branches, ERROR_HANDLE] : branches;
}

export function acceptsInput(node: GraphNode, types: Map<string, NodeTypeInfo>): boolean {
  return types.get(node.type)?.category !== "trigger";
}

const ID_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;

export function isValidNodeId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** A fresh id from a base (the type id): `llm`, `llm_2`, `llm_3`... */
export function uniqueNodeId(base: string, taken: Iterable<string>): string {
  const used = new Set(taken);
  let stem = base.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  if (!/^[a-z]/.test(stem)) stem = `n_${stem}`;
  stem = stem.slice(0, 56);
  if (!used.has(stem)) return stem;
  for (let n = 2; ; n += 1) {
    const candidate = `${stem}_${n}`;
    if (!used.has(candidate)) return candidate;
  }
}

export function uniqueEdgeId(taken: Iterable<string>): string {
  const used = new Set(taken);
  for (let n = used.size + 1; ; n += 1) {
    const candidate = `e${n}`;
    if (!used.has(candidate)) return candidate;
  }
}

/** The config a new node starts with: every default of its schema. */
export function defaultConfig(info: NodeTypeInfo): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  const properties = (info.config_schema.properties ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, property] of Object.entries(properties)) {
    if ("default" in property && property.default !== null && property.default !== undefined) {
      config[name] = structuredClone(property.default);
    }
  }
  return config;
}

export function addNode(graph: Graph, info: NodeTypeInfo, position: Position): [Graph, string] {
  const id = uniqueNodeId(info.type, graph.nodes.map((n) => n.id));
  const node: GraphNode = {
    id,
    type: info.type,
    type_version: info.version,
    name: info.title,
    config: defaultConfig(info),
    position: { x: Math.round(position.x), y: Math.round(position.y) },
  };
  return [{ ...graph, nodes: [...graph.nodes, node] }, id];
}

export interface Connection {
  source: string;
  sourceHandle: string | null;
  target: string;
  targetHandle: string | null;
}

/** Why a connection may not be made, or null. One edge per handle pair; no self loops. */
export function connectionProblem(
  graph: Graph,
  connection: Connection,
  types: Map<string, NodeTypeInfo>,
): string | null {
  if (connection.source === connection.target) return "self";
  const target = graph.nodes.find((n) => n.id === connection.target);
  if (!target || !acceptsInput(target, types)) return "trigger";
  const handle = connection.sourceHandle ?? DEFAULT_HANDLE;
  const exists = graph.edges.some(
    (e) => e.source === connection.source && e.source_handle === handle && e.target === connection.target,
  );
  return exists ? "duplicate" : null;
}

export function connect(graph: Graph, connection: Connection): Graph {
  const edge: GraphEdge = {
    id: uniqueEdgeId(graph.edges.map((e) => e.id)),
    source: connection.source,
    source_handle: connection.sourceHandle ?? DEFAULT_HANDLE,
    target: connection.target,
    target_handle: "in",
  };
  return { ...graph, edges: [...graph.edges, edge] };
}

/** Remove nodes and edges; edges touching a removed node go too. */
export function removeItems(graph: Graph, nodeIds: Iterable<string>, edgeIds: Iterable<string> = []): Graph {
  const nodes = new Set(nodeIds);
  const edges = new Set(edgeIds);
  return {
    ...graph,
    nodes: graph.nodes.filter((n) => !nodes.has(n.id)),
    edges: graph.edges.filter((e) => !edges.has(e.id) && !nodes.has(e.source) && !nodes.has(e.target)),
  };
}

export interface Clipboard {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

/** What a copy takes: the selected nodes and the edges between them. */
export function copySelection(graph: Graph, nodeIds: Iterable<string>): Clipboard {
  const chosen = new Set(nodeIds);
  return structuredClone({
    nodes: graph.nodes.filter((n) => chosen.has(n.id)),
    edges: graph.edges.filter((e) => chosen.has(e.source) && chosen.has(e.target)),
  });
}

/**
 * Paste with fresh ids, shifted by `offset`; template references between pasted nodes are
 * renamed with them (`nodes.llm.text` in a pasted template becomes `nodes.llm_2.text`).
 */
export function paste(graph: Graph, clipboard: Clipboard, offset: Position): [Graph, string[]] {
  const taken = new Set(graph.nodes.map((n) => n.id));
  const renamed = new Map<string, string>();
  for (const node of clipboard.nodes) {
    const id = uniqueNodeId(node.id.replace(/_\d+$/, ""), taken);
    taken.add(id);
    renamed.set(node.id, id);
  }
  const rename = (value: unknown): unknown => {
    if (typeof value === "string") {
      return value.replace(/\bnodes\.([a-z][a-z0-9_]*)/g, (match, id: string) =>
        renamed.has(id) ? `nodes.${renamed.get(id)}` : match,
      );
    }
    if (Array.isArray(value)) return value.map(rename);
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rename(v)]));
    }
    return value;
  };
  const nodes = clipboard.nodes.map((node) => ({
    ...structuredClone(node),
    id: renamed.get(node.id) as string,
    config: rename(node.config) as Record<string, unknown>,
    position: {
      x: (node.position?.x ?? 0) + offset.x,
      y: (node.position?.y ?? 0) + offset.y,
    },
  }));
  const edgeIds = new Set(graph.edges.map((e) => e.id));
  const edges = clipboard.edges.map((edge) => {
    const id = uniqueEdgeId(edgeIds);
    edgeIds.add(id);
    return {
      ...edge,
      id,
      source: renamed.get(edge.source) as string,
      target: renamed.get(edge.target) as string,
    };
  });
  return [
    { ...graph, nodes: [...graph.nodes, ...nodes], edges: [...graph.edges, ...edges] },
    nodes.map((n) => n.id),
  ];
}

/** Ids of the nodes that run before `nodeId` (every node with a path to it). */
export function upstreamOf(graph: Graph, nodeId: string): Set<string> {
  const incoming = new Map<string, string[]>();
  for (const edge of graph.edges) {
    const list = incoming.get(edge.target) ?? [];
    list.push(edge.source);
    incoming.set(edge.target, list);
  }
  const seen = new Set<string>();
  const queue = [...(incoming.get(nodeId) ?? [])];
  while (queue.length) {
    const id = queue.pop() as string;
    if (seen.has(id) || id === nodeId) continue;
    seen.add(id);
    queue.push(...(incoming.get(id) ?? []));
  }
  return seen;
}

export interface TemplateVariable {
  /** What to type inside {{ }}: `nodes.kb.context`, `trigger.text`, `vars.tone`. */
  path: string;
  /** The node or group it comes from, for grouping in the picker. */
  group: string;
  type: string;
}

/** Everything a template in `nodeId` may read: trigger outputs, upstream nodes' outputs,
 * workflow variables (declared or set upstream) and the conversation. */
export function availableVariables(
  graph: Graph,
  nodeId: string,
  types: Map<string, NodeTypeInfo>,
): TemplateVariable[] {
  const upstream = upstreamOf(graph, nodeId);
  const variables: TemplateVariable[] = [];
  const triggerOutputs = new Map<string, string>();
  const names = new Set<string>(Object.keys(graph.variables ?? {}));
  for (const node of graph.nodes) {
    if (!upstream.has(node.id)) continue;
    const info = types.get(node.type);
    if (!info) continue;
    if (info.category === "trigger") {
      for (const [output, type] of Object.entries(info.outputs)) triggerOutputs.set(output, type);
    } else {
      for (const [output, type] of Object.entries(info.outputs)) {
        variables.push({ path: `nodes.${node.id}.${output}`, group: node.name || node.id, type });
      }
    }
    if (node.type === "set_variable" && Array.isArray(node.config.assignments)) {
      for (const item of node.config.assignments as Record<string, unknown>[]) {
        if (typeof item?.name === "string" && item.name) names.add(item.name);
      }
    }
  }
  const triggers = [...triggerOutputs].map(([output, type]) => ({
    path: `trigger.${output}`,
    group: "trigger",
    type,
  }));
  const vars = [...names].sort().map((name) => ({ path: `vars.${name}`, group: "vars", type: "any" }));
  return [
    ...triggers,
    ...variables,
    ...vars,
    { path: "conversation.history", group: "conversation", type: "array" },
  ];
}

/** Problems by node id (edge problems go to both ends); problems of the whole graph under "". */
export function problemsByNode(graph: Graph, problems: Problem[]): Map<string, Problem[]> {
  const byNode = new Map<string, Problem[]>();
  const add = (id: string, problem: Problem) => {
    const list = byNode.get(id) ?? [];
    list.push(problem);
    byNode.set(id, list);
  };
  for (const problem of problems) {
    if (problem.node_id) {
      add(problem.node_id, problem);
    } else if (problem.edge_id) {
      const edge = graph.edges.find((e) => e.id === problem.edge_id);
      if (edge) {
        add(edge.source, problem);
        if (edge.target !== edge.source) add(edge.target, problem);
      } else add("", problem);
    } else add("", problem);
  }
  return byNode;
}

/** Stable text of a graph, to tell whether there are unsaved changes. */
export function graphKey(graph: Graph): string {
  return JSON.stringify(graph);
}
