// One node on the canvas: icon, name, type, a summary of its config, problems and, during or
// after a run, its status, latency and tokens. Handles: input on the left, one output per
// branch on the right.
import { Handle, Position, type Node, type NodeProps } from "@xyflow/react";
import { memo } from "react";
import { useTranslation } from "react-i18next";
import { nodeUi } from "../../nodes";
import { DEFAULT_HANDLE } from "../../nodes/types";
import type { NodeTrace } from "./runTrace";
import type { GraphNode, NodeTypeInfo, Problem } from "./types";

export interface FlowNodeData extends Record<string, unknown> {
  node: GraphNode;
  info?: NodeTypeInfo;
  handles: string[];
  acceptsInput: boolean;
  problems: Problem[];
  trace?: NodeTrace;
  readOnly: boolean;
}

export type FlowNodeType = Node<FlowNodeData, "workflow">;

function FlowNodeView({ data, selected }: NodeProps<FlowNodeType>) {
  const { t } = useTranslation("editor");
  const { node, info, handles, problems, trace } = data;
  const ui = nodeUi(node.type);
  const status = trace?.status;
  const classes = ["flow-node"];
  if (problems.length) classes.push("has-problems");
  if (status) classes.push(`status-${status}`);
  if (selected) classes.push("selected");
  const summary = ui.summary ? ui.summary(node.config ?? {}) : "";
  const labelled = handles.length > 1 || (handles.length === 1 && handles[0] !== DEFAULT_HANDLE);
  return (
    <div
      className={classes.join(" ")}
      data-node-id={node.id}
      data-status={status ?? ""}
      style={{ borderTopColor: ui.color }}
    >
      {data.acceptsInput && <Handle type="target" position={Position.Left} id="in" isConnectable={!data.readOnly} />}
      <div className="flow-node-header">
        <span className="flow-node-icon" aria-hidden="true" style={{ background: ui.color }}>
          {ui.icon}
        </span>
        <span className="flow-node-name">{node.name || node.id}</span>
        {problems.length > 0 && (
          <span className="flow-node-problems" title={problems.map((p) => p.message).join("\n")}>
            {t("problems_count", { count: problems.length })}
          </span>
        )}
      </div>
      <div className="flow-node-type">
        {info?.title ?? node.type} · <code>{node.id}</code>
      </div>
      {summary && <div className="flow-node-summary">{summary}</div>}
      {trace && (
        <div className="flow-node-trace" aria-live="polite">
          <span className={`badge status-${trace.status}`}>{t(`status_${trace.status}`, trace.status)}</span>
          {trace.durationMs != null && <span> {t("node_latency", { ms: Math.round(trace.durationMs) })}</span>}
          {(trace.tokensIn || trace.tokensOut) ? (
            <span> · {t("node_tokens", { tokensIn: trace.tokensIn ?? 0, tokensOut: trace.tokensOut ?? 0 })}</span>
          ) : null}
          {trace.streamed && trace.status === "running" && <div className="flow-node-stream">{trace.streamed.slice(-120)}</div>}
          {trace.error && <div className="flow-node-error">{trace.error}</div>}
        </div>
      )}
      {handles.map((handle, index) => (
        <Handle
          key={handle}
          type="source"
          position={Position.Right}
          id={handle}
          isConnectable={!data.readOnly}
          style={{ top: handles.length === 1 ? "50%" : `${((index + 1) * 100) / (handles.length + 1)}%` }}
          className={handle === "error" ? "handle-error" : undefined}
        >
          {labelled && <span className="handle-label">{handle}</span>}
        </Handle>
      ))}
    </div>
  );
}

export const FlowNode = memo(FlowNodeView);
