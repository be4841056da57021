// The upload queue: each chosen file is checked, then sent in its own request (so each has
// its own progress and its own answer), a few at a time.

/** The formats the ingestion pipeline reads (knowledge/ingestion/parsing.py). */
export const ACCEPTED_EXTENSIONS: readonly string[] = [
  ".pdf",
  ".docx",
  ".pptx",
  ".xlsx",
  ".html",
  ".htm",
  ".md",
  ".markdown",
  ".txt",
];

/** The API takes at most this many files in one request; the page sends one per request but
 * refuses bigger batches the same way, so a dropped folder does not start hundreds. */
export const MAX_FILES_PER_BATCH = 50;

export const UPLOAD_CONCURRENCY = 3;

export type FileProblem =
  | { code: "empty" }
  | { code: "type"; extension: string }
  | { code: "too_large"; limitBytes: number }
  | { code: "too_many"; limit: number };

export interface FileInfo {
  name: string;
  size: number;
}

export function extensionOf(name: string): string {
  const base = name.replace(/\\/g, "/").split("/").pop() ?? name;
  const dot = base.lastIndexOf(".");
  return dot <= 0 ? "" : base.slice(dot).toLowerCase();
}

/** Why a file cannot be uploaded, or null. The size limit is the server's
 * (KNOWLEDGE_MAX_UPLOAD_MB), which the page does not know unless told: the API refuses
 * larger files itself, with a message naming the limit. */
export function validateFile(file: FileInfo, maxBytes?: number): FileProblem | null {
  const extension = extensionOf(file.name);
  if (!ACCEPTED_EXTENSIONS.includes(extension)) return { code: "type", extension };
  if (file.size === 0) return { code: "empty" };
  if (maxBytes !== undefined && file.size > maxBytes) {
    return { code: "too_large", limitBytes: maxBytes };
  }
  return null;
}

export type UploadState = "invalid" | "waiting" | "uploading" | "uploaded" | "error";

export interface UploadItem {
  key: string;
  name: string;
  size: number;
  state: UploadState;
  loaded: number;
  total: number;
  problem?: FileProblem;
  message?: string;
  documentId?: string;
}

export type UploadAction =
  | { type: "add"; files: (FileInfo & { key: string })[]; maxBytes?: number }
  | { type: "start"; key: string }
  | { type: "progress"; key: string; loaded: number; total: number }
  | { type: "uploaded"; key: string; documentId?: string }
  | { type: "error"; key: string; message: string }
  | { type: "clear" };

function update(items: UploadItem[], key: string, change: Partial<UploadItem>): UploadItem[] {
  return items.map((item) => (item.key === key ? { ...item, ...change } : item));
}

export function uploadsReducer(items: UploadItem[], action: UploadAction): UploadItem[] {
  switch (action.type) {
    case "add": {
      const room = MAX_FILES_PER_BATCH;
      const added = action.files.map((file, index): UploadItem => {
        const problem: FileProblem | null =
          index >= room
            ? { code: "too_many", limit: room }
            : validateFile(file, action.maxBytes);
        return {
          key: file.key,
          name: file.name,
          size: file.size,
          state: problem ? "invalid" : "waiting",
          loaded: 0,
          total: file.size,
          ...(problem ? { problem } : {}),
        };
      });
      return [...items, ...added];
    }
    case "start":
      return update(items, action.key, { state: "uploading", loaded: 0 });
    case "progress":
      return update(items, action.key, {
        loaded: Math.min(action.loaded, action.total),
        total: action.total,
      });
    case "uploaded":
      return items.map((item) =>
        item.key === action.key
          ? {
              ...item,
              state: "uploaded",
              loaded: item.total,
              ...(action.documentId ? { documentId: action.documentId } : {}),
            }
          : item,
      );
    case "error":
      return update(items, action.key, { state: "error", message: action.message });
    case "clear":
      // Finished items go; those still waiting or on their way stay.
      return items.filter((item) => item.state === "waiting" || item.state === "uploading");
  }
}

/** Keys of the waiting items to start now, keeping at most `limit` uploads in flight. */
export function startable(items: readonly UploadItem[], limit = UPLOAD_CONCURRENCY): string[] {
  const running = items.filter((item) => item.state === "uploading").length;
  return items
    .filter((item) => item.state === "waiting")
    .slice(0, Math.max(0, limit - running))
    .map((item) => item.key);
}

/** 0-100; a finished upload is 100 even when the browser reported no progress events. */
export function progressPercent(item: UploadItem): number {
  if (item.state === "uploaded") return 100;
  if (item.total <= 0) return 0;
  return Math.round((item.loaded / item.total) * 100);
}

export function uploadCounts(items: readonly UploadItem[]): {
  active: number;
  uploaded: number;
  failed: number;
} {
  let active = 0;
  let uploaded = 0;
  let failed = 0;
  for (const item of items) {
    if (item.state === "waiting" || item.state === "uploading") active += 1;
    else if (item.state === "uploaded") uploaded += 1;
    else failed += 1;
  }
  return { active, uploaded, failed };
}
