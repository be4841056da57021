// The workflow graph format (docs/workflow-dsl.md) and the API's answers, as the editor uses them.

export interface Position {
  x: number;
  y: number;
}

export interface NodePolicy {
  timeout_s?: number;
  retries?: number;
  retry_backoff_s?: number;
  on_error?: "fail" | "continue" | "error_branch";
  default_output?: Record<string, unknown>;
}

export interface GraphNode {
  id: string;
  type: string;
  type_version: number;
  name?: string;
  config: Record<string, unknown>;
  position?: Position;
  policy?: NodePolicy;
}

export interface GraphEdge {
  id: string;
  source: string;
  source_handle: string;
  target: string;
  target_handle: string;
}

export interface Graph {
  format_version: number;
  variables?: Record<string, unknown>;
  settings?: Record<string, unknown>;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export type NodeCategory = "trigger" | "processing" | "output";

export interface JsonSchema {
  [key: string]: unknown;
}

export interface NodeTypeInfo {
  type: string;
  version: number;
  category: NodeCategory;
  title: string;
  description: string;
  config_schema: JsonSchema;
  outputs: Record<string, string>;
  template_fields: string[];
}

export interface Problem {
  code: string;
  message: string;
  node_id?: string | null;
  edge_id?: string | null;
  field?: string | null;
}

export interface WorkflowInfo {
  id: string;
  name: string;
  description: string;
  created_by: string | null;
  created_at: string;
  updated_at: string;
  permissions?: string[];
}

export interface Draft {
  graph: Graph;
  revision: number;
  problems: Problem[];
}

export interface VersionInfo {
  number: number;
  changelog: string;
  created_by: string | null;
  created_at: string;
  graph: Graph;
}

export type NodeStatus = "running" | "succeeded" | "failed" | "skipped" | "retrying" | "cancelled";

export interface NodeRunInfo {
  seq?: number;
  node_id: string;
  node_type?: string;
  status: string;
  attempts?: number;
  inputs?: unknown;
  outputs?: Record<string, unknown> | null;
  branch?: string | null;
  error?: string | null;
  duration_ms?: number | null;
  tokens_in?: number | null;
  tokens_out?: number | null;
}

export interface RunInfo {
  id: string;
  version: number | null;
  trigger_kind?: string;
  status: string;
  input?: unknown;
  output?: unknown;
  error?: string;
  created_at: string;
  duration_ms?: number | null;
  nodes?: NodeRunInfo[];
}

export interface DiffEntry {
  [key: string]: unknown;
}
