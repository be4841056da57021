import { describe, expect, it } from "vitest";
import { knowledgeStrings } from "./locales";
import {
  isStatus,
  isWorking,
  pipelineStep,
  STATUSES,
  statusLabelKey,
  statusTone,
  summarize,
} from "./status";
import type { KnowledgeDocument } from "./types";

describe("document statuses", () => {
  it("has a readable label in both languages for every status", () => {
    for (const status of STATUSES) {
      expect(knowledgeStrings.en[statusLabelKey(status)]).toBeTruthy();
      expect(knowledgeStrings["zh-Hans"][statusLabelKey(status)]).toBeTruthy();
    }
    expect(knowledgeStrings.en[statusLabelKey("indexed")]).toBe("Ready");
    expect(knowledgeStrings["zh-Hans"][statusLabelKey("indexed")]).toBe("就绪");
  });

  it("knows which statuses are still in progress", () => {
    expect(STATUSES.filter(isWorking)).toEqual(["queued", "parsing", "splitting", "embedding"]);
    expect(isStatus("indexed")).toBe(true);
    expect(isStatus("ready")).toBe(false);
    expect(statusTone("failed")).toBe("error");
    expect(statusTone("indexed")).toBe("ok");
    expect(statusTone("parsing")).toBe("busy");
    expect(STATUSES.map(pipelineStep)).toEqual([0, 1, 2, 3, null, null]);
  });

  it("summarizes a list", () => {
    const documents = (["indexed", "failed", "parsing", "indexed"] as const).map(
      (status, index) => ({ id: String(index), status, enabled: index !== 3 }) as KnowledgeDocument,
    );
    expect(summarize(documents)).toEqual({
      total: 4,
      ready: 2,
      working: 1,
      failed: 1,
      disabled: 1,
    });
  });
});
