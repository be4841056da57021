import { describe, expect, it } from "vitest";
import {
  extensionOf,
  progressPercent,
  startable,
  uploadCounts,
  uploadsReducer,
  validateFile,
  type UploadItem,
} from "./uploads";

const add = (items: UploadItem[], ...files: [string, number][]) =>
  uploadsReducer(items, {
    type: "add",
    files: files.map(([name, size], index) => ({ key: `k${items.length + index}`, name, size })),
  });

describe("validateFile", () => {
  it("accepts the formats the pipeline reads, whatever the case of the extension", () => {
    const names = ["a.pdf", "b.DOCX", "c.pptx", "d.xlsx", "e.htm", "f.html", "g.md", "h.TXT"];
    for (const name of names) {
      expect(validateFile({ name, size: 10 })).toBeNull();
    }
  });

  it("refuses other types, files without an extension and empty files", () => {
    expect(validateFile({ name: "setup.exe", size: 10 })).toEqual({
      code: "type",
      extension: ".exe",
    });
    expect(validateFile({ name: "README", size: 10 })).toEqual({ code: "type", extension: "" });
    expect(validateFile({ name: "notes.md", size: 0 })).toEqual({ code: "empty" });
  });

  it("checks the size only against a limit it was given", () => {
    expect(validateFile({ name: "big.pdf", size: 80 * 1024 * 1024 })).toBeNull();
    expect(validateFile({ name: "big.pdf", size: 2048 }, 1024)).toEqual({
      code: "too_large",
      limitBytes: 1024,
    });
  });

  it("reads the extension of the last path part only", () => {
    expect(extensionOf("dir.v2/notes")).toBe("");
    expect(extensionOf(".hidden")).toBe("");
    expect(extensionOf("C:\\docs\\report.final.PDF")).toBe(".pdf");
  });
});

describe("the upload queue", () => {
  it("queues valid files and marks invalid ones at once", () => {
    const items = add([], ["good.md", 100], ["tool.exe", 100], ["empty.txt", 0]);
    expect(items.map((item) => item.state)).toEqual(["waiting", "invalid", "invalid"]);
    expect(items[1].problem).toEqual({ code: "type", extension: ".exe" });
    expect(uploadCounts(items)).toEqual({ active: 1, uploaded: 0, failed: 2 });
  });

  it("starts at most the concurrency limit, counting uploads in flight", () => {
    let items = add([], ["a.md", 1], ["b.md", 1], ["c.md", 1], ["d.md", 1]);
    expect(startable(items, 3)).toEqual(["k0", "k1", "k2"]);
    items = uploadsReducer(items, { type: "start", key: "k0" });
    items = uploadsReducer(items, { type: "start", key: "k1" });
    expect(startable(items, 3)).toEqual(["k2"]);
    items = uploadsReducer(items, { type: "uploaded", key: "k0", documentId: "d0" });
    expect(startable(items, 3)).toEqual(["k2", "k3"]);
  });

  it("follows progress and ends at 100% once uploaded, even without progress events", () => {
    let items = add([], ["a.md", 2000]);
    items = uploadsReducer(items, { type: "start", key: "k0" });
    expect(progressPercent(items[0])).toBe(0);
    items = uploadsReducer(items, { type: "progress", key: "k0", loaded: 500, total: 2200 });
    expect(progressPercent(items[0])).toBe(23);
    items = uploadsReducer(items, { type: "uploaded", key: "k0", documentId: "doc-1" });
    expect(items[0]).toMatchObject({ state: "uploaded", documentId: "doc-1" });
    expect(progressPercent(items[0])).toBe(100);
  });

  it("keeps the server's message on a refused file", () => {
    let items = add([], ["big.txt", 10]);
    items = uploadsReducer(items, { type: "start", key: "k0" });
    const message = "big.txt: file larger than 1 MB";
    items = uploadsReducer(items, { type: "error", key: "k0", message });
    expect(items[0]).toMatchObject({ state: "error", message: "big.txt: file larger than 1 MB" });
  });

  it("clears finished items and keeps the ones still going", () => {
    let items = add([], ["a.md", 1], ["b.exe", 1], ["c.md", 1]);
    items = uploadsReducer(items, { type: "start", key: "k0" });
    items = uploadsReducer(items, { type: "start", key: "k2" });
    items = uploadsReducer(items, { type: "uploaded", key: "k2" });
    expect(uploadsReducer(items, { type: "clear" }).map((item) => item.name)).toEqual(["a.md"]);
  });

  it("refuses files beyond the API's batch limit", () => {
    const many = Array.from({ length: 52 }, (_, index): [string, number] => [`f${index}.md`, 1]);
    const items = add([], ...many);
    expect(items.filter((item) => item.state === "invalid")).toHaveLength(2);
    expect(items[51].problem).toEqual({ code: "too_many", limit: 50 });
  });
});
