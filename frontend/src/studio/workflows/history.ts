// Undo/redo as snapshots of the graph: every change the designer makes is one step, a drag
// is one step when it ends. Graphs are immutable values, so snapshots share structure.
import type { Graph } from "./types";

export interface History {
  past: Graph[];
  present: Graph;
  future: Graph[];
}

export const HISTORY_LIMIT = 200;

export function historyStart(graph: Graph): History {
  return { past: [], present: graph, future: [] };
}

/** A new present; `record: false` changes it without an undo step (a drag in progress). */
export function historyPush(history: History, graph: Graph, record = true): History {
  if (graph === history.present) return history;
  if (!record) return { ...history, present: graph };
  const past = [...history.past, history.present].slice(-HISTORY_LIMIT);
  return { past, present: graph, future: [] };
}

/** Record `before` as the undo point of changes made without recording (a finished drag). */
export function historyCommit(history: History, before: Graph): History {
  if (before === history.present) return history;
  const past = [...history.past, before].slice(-HISTORY_LIMIT);
  return { past, present: history.present, future: [] };
}

export function historyUndo(history: History): History {
  if (!history.past.length) return history;
  const previous = history.past[history.past.length - 1];
  return {
    past: history.past.slice(0, -1),
    present: previous,
    future: [history.present, ...history.future],
  };
}

export function historyRedo(history: History): History {
  if (!history.future.length) return history;
  const [next, ...rest] = history.future;
  return { past: [...history.past, history.present], present: next, future: rest };
}
