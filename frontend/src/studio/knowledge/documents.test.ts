import { describe, expect, it } from "vitest";
import {
  applyStatus,
  parseSocketMessage,
  reconnectDelay,
  removeDocument,
  replaceDocuments,
  shouldPoll,
  upsertDocuments,
} from "./documents";
import type { KnowledgeDocument } from "./types";

function doc(id: string, change: Partial<KnowledgeDocument> = {}): KnowledgeDocument {
  return {
    id,
    knowledge_base: 1,
    filename: `${id}.md`,
    title: id,
    kind: "",
    size: 10,
    sha256: "",
    status: "queued",
    error: "",
    chunk_count: 0,
    pages: null,
    enabled: true,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    ...change,
  };
}

describe("socket messages", () => {
  it("reads a document status message", () => {
    const message = {
      type: "document",
      document: {
        id: "a",
        status: "indexed",
        error: "",
        chunk_count: 4,
        enabled: true,
        title: "VPN",
      },
    };
    expect(parseSocketMessage(message)).toEqual(message.document);
  });

  it("ignores anything else", () => {
    expect(parseSocketMessage(null)).toBeNull();
    expect(parseSocketMessage({ type: "ping" })).toBeNull();
    const unknownStatus = { type: "document", document: { id: "a", status: "done" } };
    expect(parseSocketMessage(unknownStatus)).toBeNull();
  });

  it("applies a status to a known document and reports unknown ones", () => {
    const list = [doc("a"), doc("b")];
    const update = {
      id: "b",
      status: "failed" as const,
      error: "corrupt",
      chunk_count: 0,
      enabled: true,
      title: "",
    };
    const applied = applyStatus(list, update);
    expect(applied.known).toBe(true);
    expect(applied.documents[1]).toMatchObject({ status: "failed", error: "corrupt", title: "b" });
    expect(applied.documents[0]).toBe(list[0]);
    expect(applyStatus(list, { ...update, id: "c" })).toEqual({ documents: list, known: false });
  });
});

describe("merging REST answers", () => {
  it("puts new documents first and replaces known ones", () => {
    const list = [doc("a")];
    const later = doc("a", { status: "indexed", updated_at: "2026-01-02T00:00:00Z" });
    const merged = upsertDocuments(list, [doc("b"), later]);
    expect(merged.map((d) => [d.id, d.status])).toEqual([
      ["b", "queued"],
      ["a", "indexed"],
    ]);
  });

  it("keeps a later version of a row over an older answer", () => {
    const fresh = doc("a", { status: "indexed", updated_at: "2026-01-02T00:00:00Z" });
    expect(upsertDocuments([fresh], [doc("a")])[0].status).toBe("indexed");
    const replaced = replaceDocuments([fresh], [doc("a"), doc("b")]);
    expect(replaced.map((d) => d.status)).toEqual(["indexed", "queued"]);
  });

  it("drops documents the fresh list no longer has", () => {
    expect(replaceDocuments([doc("a"), doc("b")], [doc("b")]).map((d) => d.id)).toEqual(["b"]);
    expect(removeDocument([doc("a"), doc("b")], "a").map((d) => d.id)).toEqual(["b"]);
  });
});

describe("the polling fallback", () => {
  it("polls only while the socket is down and something is still in progress", () => {
    const working = [doc("a", { status: "embedding" })];
    const settled = [doc("a", { status: "indexed" })];
    expect(shouldPoll("polling", working)).toBe(true);
    expect(shouldPoll("polling", settled)).toBe(false);
    expect(shouldPoll("live", working)).toBe(false);
    expect(shouldPoll("connecting", working)).toBe(false);
  });

  it("reconnects with a growing, capped delay", () => {
    expect([0, 1, 2, 3].map(reconnectDelay)).toEqual([1000, 2000, 4000, 8000]);
    expect(reconnectDelay(20)).toBe(30_000);
  });
});
