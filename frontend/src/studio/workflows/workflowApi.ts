// The workflow endpoints the editor uses (docs/workflows.md), typed.
import { api, get, post } from "../../shared/api";
import type { Draft, Graph, NodeTypeInfo, Problem, RunInfo, VersionInfo, WorkflowInfo } from "./types";

interface Page<T> {
  count: number;
  next: string | null;
  results: T[];
}

const base = (id: string) => `/api/workflows/${id}`;

export const workflowApi = {
  list: () => get<Page<WorkflowInfo>>("/api/workflows/"),
  create: (name: string, description: string) =>
    post<WorkflowInfo>("/api/workflows/create/", { name, description }),
  detail: (id: string) => get<WorkflowInfo>(`${base(id)}/`),
  rename: (id: string, name: string) => api<WorkflowInfo>("PATCH", `${base(id)}/update/`, { name }),
  draft: (id: string) => get<Draft>(`${base(id)}/draft/`),
  save: (id: string, graph: Graph, baseRevision: number) =>
    post<Draft>(`${base(id)}/draft/save/`, { graph, base_revision: baseRevision }),
  validate: (id: string, graph: Graph) =>
    post<{ problems: Problem[] }>(`${base(id)}/validate/`, { graph }),
  publish: (id: string, changelog: string) =>
    post<VersionInfo>(`${base(id)}/publish/`, { changelog }),
  versions: (id: string) => get<VersionInfo[]>(`${base(id)}/versions/`),
  diff: (id: string, from: number | "draft", to: number | "draft") =>
    get<Record<string, unknown>>(`${base(id)}/diff/?from=${from}&to=${to}`),
  rollback: (id: string, number: number) =>
    post<VersionInfo>(`${base(id)}/versions/${number}/rollback/`),
  startRun: (id: string, text: string) =>
    post<RunInfo>(`${base(id)}/runs/create/`, { text, version: "draft" }),
  runs: (id: string) => get<Page<RunInfo>>(`${base(id)}/runs/`),
  run: (runId: string) => get<RunInfo>(`/api/runs/${runId}/`),
  nodeTypes: () => get<NodeTypeInfo[]>("/api/node-types/"),
};
