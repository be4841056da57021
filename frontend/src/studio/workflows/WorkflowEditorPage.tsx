// The node editor: canvas, palette, settings panel, save with conflict detection, publish,
// versions, test runs with a live trace. Everything goes through the documented API.
import {
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Connection as FlowConnection,
  type Edge,
  type NodeChange,
  type EdgeChange,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { useCallback, useEffect, useMemo, useRef, useState, type DragEvent } from "react";
import { useTranslation } from "react-i18next";
import { nodeUi } from "../../nodes";
import { ApiError } from "../../shared/api";
import { FlowNode, type FlowNodeData, type FlowNodeType } from "./FlowNode";
import {
  acceptsInput,
  addNode,
  availableVariables,
  connect,
  connectionProblem,
  copySelection,
  EMPTY_GRAPH,
  graphKey,
  outputHandles,
  paste,
  problemsByNode,
  removeItems,
  type Clipboard,
} from "./graph";
import { historyCommit, historyPush, historyRedo, historyStart, historyUndo, type History } from "./history";
import { autoLayout } from "./layout";
import "./editor.css";
import "./locales";
import { DRAG_TYPE, Palette } from "./Palette";
import { PublishDialog } from "./PublishDialog";
import { RunPanel } from "./RunPanel";
import type { RunTrace } from "./runTrace";
import { SettingsPanel } from "./SettingsPanel";
import type { Graph, GraphNode, NodePolicy, NodeTypeInfo, Problem, VersionInfo, WorkflowInfo } from "./types";
import { VersionsPanel } from "./VersionsPanel";
import { workflowApi } from "./workflowApi";

const NODE_TYPES = { workflow: FlowNode };
type Notice = { kind: "ok" | "error" | "warn"; text: string } | null;

function isTyping(target: EventTarget | null): boolean {
  const element = target as HTMLElement | null;
  if (!element) return false;
  return (
    element.isContentEditable ||
    ["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName) ||
    element.closest("dialog") !== null
  );
}

export function WorkflowEditorPage({ workflowId, runId }: { workflowId: string; runId?: string }) {
  return (
    <ReactFlowProvider>
      <Editor workflowId={workflowId} runId={runId} />
    </ReactFlowProvider>
  );
}

function Editor({ workflowId, runId }: { workflowId: string; runId?: string }) {
  const { t } = useTranslation("editor");
  const flow = useReactFlow();
  const [workflow, setWorkflow] = useState<WorkflowInfo | null>(null);
  const [loadError, setLoadError] = useState("");
  const [typeList, setTypeList] = useState<NodeTypeInfo[]>([]);
  const [history, setHistory] = useState<History>(historyStart(EMPTY_GRAPH));
  const [revision, setRevision] = useState(0);
  const [savedKey, setSavedKey] = useState(graphKey(EMPTY_GRAPH));
  const [problems, setProblems] = useState<Problem[]>([]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [selectedEdges, setSelectedEdges] = useState<Set<string>>(new Set());
  const [notice, setNotice] = useState<Notice>(null);
  const [conflict, setConflict] = useState<number | null>(null);
  const [saving, setSaving] = useState(false);
  const [panel, setPanel] = useState<"versions" | "run" | null>(runId ? "run" : null);
  const [publishing, setPublishing] = useState(false);
  const [versionsKey, setVersionsKey] = useState(0);
  const [trace, setTrace] = useState<RunTrace | null>(null);
  const [fitRequest, setFitRequest] = useState(0);
  // Measured node sizes: the canvas is controlled, so they must come back with every node
  // (the minimap, fitting and visibility culling use them).
  const [sizes, setSizes] = useState<Map<string, { width: number; height: number }>>(new Map());
  const clipboard = useRef<Clipboard | null>(null);
  const dragStart = useRef<Graph | null>(null);
  const lastEdit = useRef<{ key: string; at: number }>({ key: "", at: 0 });
  const graph = history.present;
  const types = useMemo(() => new Map(typeList.map((info) => [info.type, info])), [typeList]);
  const permissions = workflow?.permissions ?? [];
  const readOnly = workflow !== null && !permissions.includes("change");
  const dirty = graphKey(graph) !== savedKey;

  // --- loading ---------------------------------------------------------------------------
  const loadDraft = useCallback(async () => {
    const draft = await workflowApi.draft(workflowId);
    setHistory(historyStart(draft.graph));
    setRevision(draft.revision);
    setSavedKey(graphKey(draft.graph));
    setProblems(draft.problems);
    setConflict(null);
    return draft;
  }, [workflowId]);

  useEffect(() => {
    Promise.all([workflowApi.detail(workflowId), workflowApi.nodeTypes(), loadDraft()])
      .then(([info, nodeTypes]) => {
        setWorkflow(info);
        setTypeList(nodeTypes);
        setFitRequest((n) => n + 1);
      })
      .catch((exc) =>
        setLoadError(exc instanceof ApiError && exc.status === 404 ? t("not_found") : (exc as Error).message),
      );
  }, [workflowId, loadDraft, t]);

  // Fit the view once the canvas has the new positions (after loading, auto-layout).
  useEffect(() => {
    if (!fitRequest) return;
    const timer = window.setTimeout(() => void flow.fitView({ padding: 0.2, maxZoom: 1 }), 30);
    return () => window.clearTimeout(timer);
  }, [fitRequest, flow]);

  // Problems follow the graph: the validator runs on the server a moment after each change.
  const graphText = graphKey(graph);
  useEffect(() => {
    if (!workflow) return;
    const timer = window.setTimeout(() => {
      workflowApi
        .validate(workflowId, graph)
        .then((answer) => setProblems(answer.problems))
        .catch(() => undefined);
    }, 400);
    return () => window.clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [graphText, workflow, workflowId]);

  useEffect(() => {
    const warn = (event: BeforeUnloadEvent) => {
      if (dirty && !readOnly) event.preventDefault();
    };
    window.addEventListener("beforeunload", warn);
    return () => window.removeEventListener("beforeunload", warn);
  }, [dirty, readOnly]);

  // --- editing ---------------------------------------------------------------------------
  const change = useCallback((next: Graph, editKey?: string) => {
    // Typing in one field is one undo step, not one per key.
    const now = Date.now();
    const merge = editKey !== undefined && lastEdit.current.key === editKey && now - lastEdit.current.at < 1000;
    lastEdit.current = { key: editKey ?? "", at: now };
    setHistory((h) => historyPush(h, next, !merge));
  }, []);

  const updateNode = useCallback(
    (id: string, update: (node: GraphNode) => GraphNode, editKey: string) => {
      setHistory((h) => {
        const next = { ...h.present, nodes: h.present.nodes.map((n) => (n.id === id ? update(n) : n)) };
        const now = Date.now();
        const merge = lastEdit.current.key === editKey && now - lastEdit.current.at < 1000;
        lastEdit.current = { key: editKey, at: now };
        return historyPush(h, next, !merge);
      });
    },
    [],
  );

  const centre = () => {
    const pane = document.querySelector(".react-flow")?.getBoundingClientRect();
    const point = pane ? { x: pane.left + pane.width / 2, y: pane.top + pane.height / 2 } : { x: 400, y: 300 };
    return flow.screenToFlowPosition(point);
  };

  const add = (info: NodeTypeInfo, position = centre()) => {
    if (readOnly) return;
    const offset = graph.nodes.length % 5;
    const [next, id] = addNode(graph, info, { x: position.x - 110 + offset * 16, y: position.y - 36 + offset * 16 });
    change(next);
    setSelected(new Set([id]));
  };

  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    const type = event.dataTransfer.getData(DRAG_TYPE);
    const info = types.get(type);
    if (info) add(info, flow.screenToFlowPosition({ x: event.clientX, y: event.clientY }));
  };

  const onNodesChange = useCallback(
    (changes: NodeChange<FlowNodeType>[]) => {
      let moved = false;
      let ended = false;
      let stepped = false;
      const positions = new Map<string, { x: number; y: number }>();
      const selection = new Map<string, boolean>();
      const measured = new Map<string, { width: number; height: number }>();
      for (const item of changes) {
        if (item.type === "dimensions" && item.dimensions) {
          measured.set(item.id, { width: item.dimensions.width, height: item.dimensions.height });
          continue;
        }
        if (item.type === "position" && item.position) {
          positions.set(item.id, item.position);
          moved = true;
          if (item.dragging === false) ended = true;
          // Arrow keys move a selected node without a drag: each press is one step.
          if (item.dragging === undefined) stepped = true;
        } else if (item.type === "position" && item.dragging === false) {
          ended = true;
        } else if (item.type === "select") {
          selection.set(item.id, item.selected);
        }
      }
      if (measured.size) {
        setSizes((current) => {
          const changed = [...measured].some(([id, size]) => {
            const known = current.get(id);
            return !known || known.width !== size.width || known.height !== size.height;
          });
          return changed ? new Map([...current, ...measured]) : current;
        });
      }
      if (selection.size) {
        setSelected((current) => {
          const next = new Set(current);
          for (const [id, on] of selection) {
            if (on) next.add(id);
            else next.delete(id);
          }
          return next;
        });
      }
      if (moved && !readOnly) {
        setHistory((h) => {
          if (!dragStart.current && !stepped) dragStart.current = h.present;
          const next = {
            ...h.present,
            nodes: h.present.nodes.map((n) => {
              const p = positions.get(n.id);
              return p ? { ...n, position: { x: Math.round(p.x), y: Math.round(p.y) } } : n;
            }),
          };
          return historyPush(h, next, stepped);
        });
      }
      if (ended && dragStart.current) {
        const before = dragStart.current;
        dragStart.current = null;
        setHistory((h) => historyCommit(h, before));
      }
    },
    [readOnly],
  );

  const onEdgesChange = useCallback((changes: EdgeChange[]) => {
    const selection = changes.filter((c) => c.type === "select");
    if (!selection.length) return;
    setSelectedEdges((current) => {
      const next = new Set(current);
      for (const item of selection) {
        if (item.type !== "select") continue;
        if (item.selected) next.add(item.id);
        else next.delete(item.id);
      }
      return next;
    });
  }, []);

  const onConnect = (connection: FlowConnection) => {
    const problem = connectionProblem(graph, connection, types);
    if (problem) {
      setNotice({ kind: "warn", text: t(`connect_refused_${problem}`) });
      return;
    }
    change(connect(graph, connection));
  };

  const deleteSelection = useCallback(() => {
    if (readOnly || (!selected.size && !selectedEdges.size)) return;
    change(removeItems(graph, selected, selectedEdges));
    setSelected(new Set());
    setSelectedEdges(new Set());
  }, [readOnly, selected, selectedEdges, graph, change]);

  const copy = useCallback(() => {
    if (selected.size) clipboard.current = copySelection(graph, selected);
  }, [graph, selected]);

  const pasteClipboard = useCallback(() => {
    if (readOnly || !clipboard.current?.nodes.length) return;
    const [next, ids] = paste(graph, clipboard.current, { x: 40, y: 40 });
    change(next);
    setSelected(new Set(ids));
    clipboard.current = copySelection(next, ids);
  }, [readOnly, graph, change]);

  const undo = useCallback(() => setHistory(historyUndo), []);
  const redo = useCallback(() => setHistory(historyRedo), []);
  const layout = () => {
    change(autoLayout(graph));
    setFitRequest((n) => n + 1);
  };

  // --- saving and publishing ---------------------------------------------------------------
  const save = useCallback(
    async (baseRevision = revision): Promise<boolean> => {
      if (readOnly) return false;
      setSaving(true);
      const sent = graph;
      try {
        const draft = await workflowApi.save(workflowId, sent, baseRevision);
        setRevision(draft.revision);
        setSavedKey(graphKey(sent));
        setProblems(draft.problems);
        setConflict(null);
        setNotice({ kind: "ok", text: t("saved") });
        return true;
      } catch (exc) {
        if (exc instanceof ApiError && exc.status === 409) {
          setConflict(Number(exc.body.current_revision));
        } else {
          setNotice({ kind: "error", text: t("save_failed", { message: (exc as Error).message }) });
        }
        return false;
      } finally {
        setSaving(false);
      }
    },
    [readOnly, graph, revision, workflowId, t],
  );

  const publish = async (changelog: string) => {
    try {
      const version = await workflowApi.publish(workflowId, changelog);
      setPublishing(false);
      setVersionsKey((k) => k + 1);
      setNotice({ kind: "ok", text: t("published", { number: version.number }) });
    } catch (exc) {
      setPublishing(false);
      if (exc instanceof ApiError && Array.isArray(exc.body.problems)) {
        setProblems(exc.body.problems as Problem[]);
        setNotice({ kind: "error", text: t("publish_failed") });
      } else setNotice({ kind: "error", text: (exc as Error).message });
    }
  };

  const startPublish = async () => {
    if (dirty && !(await save())) return;
    setPublishing(true);
  };

  const rolledBack = async (version: VersionInfo, from: number) => {
    await loadDraft();
    setVersionsKey((k) => k + 1);
    setNotice({ kind: "ok", text: t("rolled_back", { number: from, newNumber: version.number }) });
  };

  const beforeRun = async () => (dirty ? save() : true);

  // --- keyboard ----------------------------------------------------------------------------
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (isTyping(event.target)) return;
      const mod = event.ctrlKey || event.metaKey;
      const key = event.key.toLowerCase();
      if (mod && key === "s") {
        event.preventDefault();
        void save();
      } else if (mod && key === "z" && !event.shiftKey) {
        event.preventDefault();
        undo();
      } else if (mod && ((key === "z" && event.shiftKey) || key === "y")) {
        event.preventDefault();
        redo();
      } else if (mod && key === "c") {
        copy();
      } else if (mod && key === "v") {
        event.preventDefault();
        pasteClipboard();
      } else if (mod && key === "a") {
        event.preventDefault();
        setSelected(new Set(graph.nodes.map((n) => n.id)));
      } else if (key === "delete" || key === "backspace") {
        event.preventDefault();
        deleteSelection();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [save, undo, redo, copy, pasteClipboard, deleteSelection, graph]);

  // --- what the canvas draws ----------------------------------------------------------------
  const byNode = useMemo(() => problemsByNode(graph, problems), [graph, problems]);
  const dataCache = useRef(new Map<string, FlowNodeData>());
  const nodes: FlowNodeType[] = useMemo(() => {
    const cache = dataCache.current;
    const next = new Map<string, FlowNodeData>();
    const list = graph.nodes.map((node) => {
      const previous = cache.get(node.id);
      const nodeProblems = byNode.get(node.id) ?? [];
      const nodeTrace = trace?.nodes[node.id];
      const info = types.get(node.type);
      // Reuse the data object when nothing it shows changed: dragging one node of 200 then
      // re-renders one node.
      const data =
        previous &&
        previous.node.config === node.config &&
        previous.node.name === node.name &&
        previous.node.policy === node.policy &&
        previous.info === info &&
        previous.trace === nodeTrace &&
        previous.readOnly === readOnly &&
        JSON.stringify(previous.problems) === JSON.stringify(nodeProblems)
          ? previous
          : {
              node,
              info,
              handles: outputHandles(node),
              acceptsInput: acceptsInput(node, types),
              problems: nodeProblems,
              trace: nodeTrace,
              readOnly,
            };
      next.set(node.id, data);
      return {
        id: node.id,
        type: "workflow" as const,
        position: node.position ?? { x: 0, y: 0 },
        measured: sizes.get(node.id),
        data,
        selected: selected.has(node.id),
        draggable: !readOnly,
        connectable: !readOnly,
        deletable: !readOnly,
      };
    });
    dataCache.current = next;
    return list;
  }, [graph.nodes, byNode, trace, types, readOnly, selected, sizes]);

  const edges: Edge[] = useMemo(
    () =>
      graph.edges.map((edge) => {
        const sourceTrace = trace?.nodes[edge.source];
        const taken = sourceTrace?.branch === edge.source_handle && sourceTrace.status !== "running";
        return {
          id: edge.id,
          source: edge.source,
          sourceHandle: edge.source_handle,
          target: edge.target,
          targetHandle: edge.target_handle,
          selected: selectedEdges.has(edge.id),
          animated: taken,
          className: taken ? "edge-taken" : undefined,
          deletable: !readOnly,
        };
      }),
    [graph.edges, trace, selectedEdges, readOnly],
  );

  if (loadError) {
    return (
      <div className="page">
        <p className="notice error" role="alert">
          {loadError}
        </p>
      </div>
    );
  }
  if (!workflow) return <div className="page muted">{t("loading")}</div>;

  const selectedNode = selected.size === 1 ? graph.nodes.find((n) => selected.has(n.id)) : undefined;
  const graphProblems = byNode.get("") ?? [];
  const canPublish = permissions.includes("publish");
  const canRun = permissions.includes("run");

  return (
    <div className="editor">
      <div className="editor-toolbar toolbar" role="toolbar" aria-label={workflow.name}>
        <h1 className="editor-title">{workflow.name}</h1>
        {readOnly ? (
          <span className="notice warn read-only-banner">{t("read_only")}</span>
        ) : (
          <>
            <button type="button" className="primary" onClick={() => void save()} disabled={saving} title="Ctrl+S">
              {saving ? t("saving") : t("save")}
            </button>
            <span className="save-state muted" aria-live="polite">
              {dirty ? t("unsaved") : t("saved")}
            </span>
            <button type="button" onClick={undo} disabled={!history.past.length} title="Ctrl+Z">
              {t("undo")}
            </button>
            <button type="button" onClick={redo} disabled={!history.future.length} title="Ctrl+Shift+Z">
              {t("redo")}
            </button>
            <button type="button" onClick={copy} disabled={!selected.size} title="Ctrl+C">
              {t("copy")}
            </button>
            <button type="button" onClick={pasteClipboard} title="Ctrl+V">
              {t("paste")}
            </button>
            <button type="button" onClick={deleteSelection} disabled={!selected.size && !selectedEdges.size} title="Delete">
              {t("delete")}
            </button>
            <button type="button" onClick={layout}>
              {t("auto_layout")}
            </button>
          </>
        )}
        <span className="toolbar-spacer" />
        <span className={problems.length ? "problem-count has-problems" : "problem-count"}>
          {problems.length ? t("problems_count", { count: problems.length }) : t("no_problems")}
        </span>
        <button type="button" onClick={() => setPanel(panel === "run" ? null : "run")} aria-pressed={panel === "run"}>
          {t("test_run")}
        </button>
        <button
          type="button"
          onClick={() => setPanel(panel === "versions" ? null : "versions")}
          aria-pressed={panel === "versions"}
        >
          {t("versions")}
        </button>
        {canPublish && !readOnly && (
          <button type="button" className="primary" onClick={() => void startPublish()}>
            {t("publish")}
          </button>
        )}
      </div>
      {notice && (
        <div className={`notice ${notice.kind} editor-notice`} role={notice.kind === "error" ? "alert" : "status"}>
          {notice.text}
          <button type="button" className="link-button" onClick={() => setNotice(null)} aria-label={t("close")}>
            ×
          </button>
        </div>
      )}
      {conflict !== null && (
        <div className="notice error conflict" role="alert">
          <p>{t("conflict", { revision: conflict })}</p>
          <div className="toolbar">
            <button type="button" onClick={() => void loadDraft()}>
              {t("conflict_reload")}
            </button>
            <button type="button" onClick={() => setConflict(null)}>
              {t("conflict_keep")}
            </button>
          </div>
        </div>
      )}
      {graphProblems.length > 0 && (
        <ul className="notice error graph-problems" aria-label={t("graph_problems")}>
          {graphProblems.map((problem, index) => (
            <li key={index}>{problem.message}</li>
          ))}
        </ul>
      )}
      <div className="editor-body">
        {!readOnly && <Palette types={typeList} onAdd={(info) => add(info)} />}
        <div className="canvas" onDrop={onDrop} onDragOver={(e) => e.preventDefault()} aria-label={t("canvas")}>
          <ReactFlow<FlowNodeType, Edge>
            nodes={nodes}
            edges={edges}
            nodeTypes={NODE_TYPES}
            onNodesChange={onNodesChange}
            onEdgesChange={onEdgesChange}
            onConnect={onConnect}
            deleteKeyCode={null}
            selectionKeyCode="Shift"
            multiSelectionKeyCode={["Meta", "Control"]}
            nodesDraggable={!readOnly}
            nodesConnectable={!readOnly}
            elementsSelectable
            onlyRenderVisibleElements
            minZoom={0.1}
            maxZoom={2}
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls showInteractive={false} />
            <MiniMap<FlowNodeType>
              pannable
              zoomable
              ariaLabel="minimap"
              nodeColor={(n) => nodeUi(n.data.node.type).color}
            />
          </ReactFlow>
          <p className="visually-hidden">{t("keyboard_help")}</p>
        </div>
        <aside className="inspector">
          {panel === "run" && (
            <RunPanel
              workflowId={workflowId}
              canRun={canRun}
              trace={trace}
              initialRunId={runId}
              beforeRun={beforeRun}
              onTrace={setTrace}
              onClose={() => {
                setPanel(null);
                setTrace(null);
              }}
            />
          )}
          {panel === "versions" && (
            <VersionsPanel
              workflowId={workflowId}
              canPublish={canPublish && !readOnly}
              refreshKey={versionsKey}
              onRolledBack={rolledBack}
              onClose={() => setPanel(null)}
            />
          )}
          {panel === null &&
            (selectedNode ? (
              <SettingsPanel
                node={selectedNode}
                info={types.get(selectedNode.type)}
                problems={byNode.get(selectedNode.id) ?? []}
                variables={availableVariables(graph, selectedNode.id, types)}
                readOnly={readOnly}
                onConfig={(config) =>
                  updateNode(selectedNode.id, (n) => ({ ...n, config }), `config:${selectedNode.id}`)
                }
                onName={(name) => updateNode(selectedNode.id, (n) => ({ ...n, name }), `name:${selectedNode.id}`)}
                onPolicy={(policy: NodePolicy) =>
                  updateNode(selectedNode.id, (n) => ({ ...n, policy }), `policy:${selectedNode.id}`)
                }
                onDelete={() => {
                  change(removeItems(graph, [selectedNode.id]));
                  setSelected(new Set());
                }}
              />
            ) : (
              <p className="muted inspector-empty">{t("select_node")}</p>
            ))}
        </aside>
      </div>
      {publishing && <PublishDialog onPublish={publish} onClose={() => setPublishing(false)} />}
    </div>
  );
}
