// Test runs of the draft, watched live over the run socket, and past runs replayed on the
// canvas. The trace goes up to the page, which colours the nodes.
import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { socketUrl } from "../../shared/api";
import { applyEvent, isFinished, traceFromRun, type RunTrace, type TraceEventMessage } from "./runTrace";
import type { RunInfo } from "./types";
import { workflowApi } from "./workflowApi";

export function RunPanel(props: {
  workflowId: string;
  canRun: boolean;
  trace: RunTrace | null;
  initialRunId?: string;
  beforeRun: () => Promise<boolean>;
  onTrace: (trace: RunTrace | null) => void;
  onClose: () => void;
}) {
  const { t, i18n } = useTranslation("editor");
  const { onTrace, workflowId } = props;
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const [runs, setRuns] = useState<RunInfo[] | null>(null);
  const socket = useRef<WebSocket | null>(null);
  const traceRef = useRef<RunTrace | null>(props.trace);

  const publish = useCallback(
    (trace: RunTrace | null) => {
      traceRef.current = trace;
      onTrace(trace);
    },
    [onTrace],
  );

  const loadRuns = useCallback(() => {
    workflowApi
      .runs(workflowId)
      .then((page) => setRuns(page.results))
      .catch((exc: Error) => setError(exc.message));
  }, [workflowId]);

  const replay = useCallback(
    async (runId: string) => {
      socket.current?.close();
      try {
        publish(traceFromRun(await workflowApi.run(runId)));
      } catch (exc) {
        setError((exc as Error).message);
      }
    },
    [publish],
  );

  useEffect(() => {
    loadRuns();
    if (props.initialRunId) void replay(props.initialRunId);
    return () => socket.current?.close();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  // The stored run has the final output and every node's record; the socket can announce
  // the end a moment before the worker's transaction is visible, so ask until it is.
  const settle = async (runId: string, attempt: number): Promise<void> => {
    try {
      const stored = await workflowApi.run(runId);
      if (isFinished(stored.status) || attempt >= 20) {
        const live = traceRef.current;
        const final = traceFromRun(stored);
        publish(live && live.runId === runId ? { ...final, nodes: { ...live.nodes, ...final.nodes } } : final);
        loadRuns();
        return;
      }
    } catch {
      if (attempt >= 20) return;
    }
    window.setTimeout(() => void settle(runId, attempt + 1), 300);
  };

  const watch = (run: RunInfo) => {
    socket.current?.close();
    publish(traceFromRun({ ...run, nodes: [] }));
    const ws = new WebSocket(socketUrl(`/ws/runs/${run.id}/`));
    socket.current = ws;
    ws.onmessage = (message) => {
      const data = JSON.parse(String(message.data)) as {
        type: string;
        run?: RunInfo;
        nodes?: RunInfo["nodes"];
        event?: TraceEventMessage;
      };
      let trace = traceRef.current;
      if (data.type === "snapshot" && data.run) {
        trace = traceFromRun({ ...data.run, nodes: data.nodes ?? data.run.nodes ?? [] });
      } else if (data.type === "event" && data.event && trace) {
        trace = applyEvent(trace, data.event);
      }
      publish(trace);
      if (trace && isFinished(trace.status)) {
        ws.close();
        void settle(run.id, 0);
      }
    };
    ws.onerror = () => setError("socket error");
  };

  const start = async (event: FormEvent) => {
    event.preventDefault();
    setError("");
    if (!(await props.beforeRun())) return;
    try {
      watch(await workflowApi.startRun(workflowId, text));
    } catch (exc) {
      setError((exc as Error).message);
    }
  };

  const trace = props.trace;
  const running = trace !== null && !isFinished(trace.status);
  return (
    <section className="side-panel run-panel" aria-label={t("run_title")}>
      <header className="side-panel-header">
        <h2>{t("run_title")}</h2>
        <button type="button" onClick={props.onClose}>
          {t("close")}
        </button>
      </header>
      {props.canRun && (
        <form onSubmit={start} className="run-form">
          <label htmlFor="run-message">{t("run_message")}</label>
          <textarea id="run-message" rows={2} value={text} onChange={(e) => setText(e.target.value)} />
          <button type="submit" className="primary" disabled={running}>
            {running ? t("run_running") : t("run_send")}
          </button>
        </form>
      )}
      {error && (
        <p className="notice error" role="alert">
          {error}
        </p>
      )}
      {trace && (
        <div className="run-result" aria-live="polite">
          <p className={`run-status status-${trace.status}`}>
            {t("run_status", { status: t(`status_${trace.status}`, trace.status) })}
          </p>
          {trace.output != null && trace.output !== "" && (
            <>
              <h3>{t("run_output")}</h3>
              <pre className="run-output">{typeof trace.output === "string" ? trace.output : JSON.stringify(trace.output, null, 2)}</pre>
            </>
          )}
          {trace.error && (
            <>
              <h3>{t("run_error")}</h3>
              <pre className="run-output error-text">{trace.error}</pre>
            </>
          )}
          <h3>{t("run_nodes")}</h3>
          <ol className="run-nodes">
            {Object.entries(trace.nodes).map(([nodeId, node]) => (
              <li key={nodeId} data-node-id={nodeId}>
                <details>
                  <summary>
                    <span className={`badge status-${node.status}`}>{t(`status_${node.status}`, node.status)}</span>{" "}
                    <code>{nodeId}</code>
                    {node.durationMs != null && <span className="muted"> · {t("node_latency", { ms: Math.round(node.durationMs) })}</span>}
                    {node.tokensIn || node.tokensOut ? (
                      <span className="muted">
                        {" "}
                        · {t("node_tokens", { tokensIn: node.tokensIn ?? 0, tokensOut: node.tokensOut ?? 0 })}
                      </span>
                    ) : null}
                  </summary>
                  {node.branch && (
                    <p>
                      {t("branch")}: <code>{node.branch}</code>
                    </p>
                  )}
                  {node.error && <p className="error-text">{node.error}</p>}
                  {node.status === "running" && node.streamed ? (
                    <pre className="run-output">{node.streamed}</pre>
                  ) : (
                    node.outputs && <pre className="run-output">{JSON.stringify(node.outputs, null, 2)}</pre>
                  )}
                </details>
              </li>
            ))}
          </ol>
        </div>
      )}
      <h3>{t("run_history")}</h3>
      {runs?.length === 0 && <p className="muted">{t("run_none")}</p>}
      <ul className="run-list">
        {runs?.map((run) => (
          <li key={run.id}>
            <span className={`badge status-${run.status}`}>{t(`status_${run.status}`, run.status)}</span>{" "}
            <span className="muted">{new Date(run.created_at).toLocaleString(i18n.language)}</span>{" "}
            <span>{run.version === null ? t("draft") : t("version", { number: run.version })}</span>{" "}
            <button type="button" onClick={() => replay(run.id)}>
              {t("run_replay")}
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}
