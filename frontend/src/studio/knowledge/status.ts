// Document statuses: their order through ingestion, readable labels and summaries.
import type { DocumentStatus, KnowledgeDocument } from "./types";

export const STATUSES: readonly DocumentStatus[] = [
  "queued",
  "parsing",
  "splitting",
  "embedding",
  "indexed",
  "failed",
];

export function isStatus(value: unknown): value is DocumentStatus {
  return typeof value === "string" && (STATUSES as readonly string[]).includes(value);
}

/** Still on its way through the worker (so worth watching). */
export function isWorking(status: DocumentStatus): boolean {
  return status !== "indexed" && status !== "failed";
}

/** The locale key of the status's label ("indexed" reads "Ready"). */
export function statusLabelKey(status: DocumentStatus): string {
  return `status_${status}`;
}

export type StatusTone = "ok" | "error" | "busy";

export function statusTone(status: DocumentStatus): StatusTone {
  if (status === "indexed") return "ok";
  if (status === "failed") return "error";
  return "busy";
}

/** 1-based step of the pipeline for a progress hint ("step 2 of 4"); null when finished. */
export function pipelineStep(status: DocumentStatus): number | null {
  const steps: DocumentStatus[] = ["parsing", "splitting", "embedding"];
  if (status === "queued") return 0;
  const index = steps.indexOf(status);
  return index < 0 ? null : index + 1;
}

export interface DocumentSummary {
  total: number;
  ready: number;
  working: number;
  failed: number;
  disabled: number;
}

export function summarize(documents: readonly KnowledgeDocument[]): DocumentSummary {
  const summary: DocumentSummary = { total: 0, ready: 0, working: 0, failed: 0, disabled: 0 };
  for (const document of documents) {
    summary.total += 1;
    if (document.status === "indexed") summary.ready += 1;
    else if (document.status === "failed") summary.failed += 1;
    else summary.working += 1;
    if (!document.enabled) summary.disabled += 1;
  }
  return summary;
}
