// A run's live trace folded into what the canvas shows per node: status, output, latency,
// tokens and text streamed so far. Fed by the run socket's snapshot and events
// (docs/workflows.md#watching-a-run-live) or by a stored run for a replay.
import type { NodeRunInfo, RunInfo } from "./types";

export interface NodeTrace {
  status: string;
  outputs?: Record<string, unknown> | null;
  branch?: string | null;
  error?: string | null;
  durationMs?: number | null;
  tokensIn?: number | null;
  tokensOut?: number | null;
  attempt?: number;
  streamed?: string;
}

export interface RunTrace {
  runId: string;
  status: string;
  output?: unknown;
  error?: string | null;
  nodes: Record<string, NodeTrace>;
}

export interface TraceEventMessage {
  kind?: string;
  type?: string;
  node_id?: string | null;
  status?: string | null;
  attempt?: number;
  outputs?: Record<string, unknown> | null;
  branch?: string | null;
  error?: string | null;
  duration_ms?: number;
  tokens_in?: number;
  tokens_out?: number;
  output?: unknown;
}

const FINISHED_RUN = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

export function isFinished(status: string): boolean {
  return FINISHED_RUN.has(status);
}

function fromStored(node: NodeRunInfo): NodeTrace {
  return {
    status: node.status,
    outputs: node.outputs ?? null,
    branch: node.branch ?? null,
    error: node.error || null,
    durationMs: node.duration_ms ?? null,
    tokensIn: node.tokens_in ?? null,
    tokensOut: node.tokens_out ?? null,
    attempt: node.attempts,
  };
}

export function traceFromRun(run: RunInfo): RunTrace {
  const nodes: Record<string, NodeTrace> = {};
  for (const node of run.nodes ?? []) nodes[node.node_id] = fromStored(node);
  return { runId: run.id, status: run.status, output: run.output, error: run.error ?? null, nodes };
}

export function applyEvent(trace: RunTrace, event: TraceEventMessage): RunTrace {
  const kind = event.kind ?? event.type ?? "";
  const id = event.node_id ?? "";
  const previous = trace.nodes[id];
  const withNode = (node: NodeTrace): RunTrace => ({ ...trace, nodes: { ...trace.nodes, [id]: node } });
  switch (kind) {
    case "run_started":
      return { ...trace, status: "running" };
    case "node_started":
      return withNode({ status: "running", attempt: event.attempt, streamed: "" });
    case "node_delta": {
      const delta = typeof event.outputs?.delta === "string" ? event.outputs.delta : "";
      return withNode({ ...(previous ?? { status: "running" }), streamed: (previous?.streamed ?? "") + delta });
    }
    case "node_retry":
      return withNode({ ...(previous ?? {}), status: "retrying", error: event.error ?? null, attempt: event.attempt });
    case "node_finished":
      return withNode({
        status: event.status ?? "succeeded",
        outputs: event.outputs ?? null,
        branch: event.branch ?? null,
        error: event.error ?? null,
        durationMs: event.duration_ms ?? null,
        tokensIn: event.tokens_in ?? null,
        tokensOut: event.tokens_out ?? null,
        attempt: event.attempt,
        streamed: previous?.streamed,
      });
    case "node_skipped":
      return withNode({ status: "skipped" });
    case "run_finished":
      return {
        ...trace,
        status: event.status ?? "succeeded",
        output: event.output ?? (event.outputs as Record<string, unknown> | undefined)?.output ?? trace.output,
        error: event.error ?? trace.error,
      };
    default:
      return trace;
  }
}
