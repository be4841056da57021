// The document list of a base kept current from three sources: REST answers (whole records),
// WebSocket status messages (partial) and the user's own actions.
import { isStatus, isWorking } from "./status";
import type { KnowledgeDocument, StatusUpdate } from "./types";

/** A status message from the socket, or null when the data is anything else. */
export function parseSocketMessage(data: unknown): StatusUpdate | null {
  if (!data || typeof data !== "object") return null;
  const message = data as { type?: unknown; document?: unknown };
  if (message.type !== "document" || !message.document || typeof message.document !== "object") {
    return null;
  }
  const document = message.document as Record<string, unknown>;
  if (typeof document.id !== "string" || !isStatus(document.status)) return null;
  return {
    id: document.id,
    status: document.status,
    error: typeof document.error === "string" ? document.error : "",
    chunk_count: typeof document.chunk_count === "number" ? document.chunk_count : 0,
    enabled: document.enabled !== false,
    title: typeof document.title === "string" ? document.title : "",
  };
}

/** Apply a status message; `known` is false when the list has no such document yet (one
 * uploaded in another tab, or whose upload answer has not arrived): fetch it then. */
export function applyStatus(
  documents: readonly KnowledgeDocument[],
  update: StatusUpdate,
): { documents: KnowledgeDocument[]; known: boolean } {
  let known = false;
  const next = documents.map((document) => {
    if (document.id !== update.id) return document;
    known = true;
    return {
      ...document,
      status: update.status,
      error: update.error,
      chunk_count: update.chunk_count,
      enabled: update.enabled,
      title: update.title || document.title,
    };
  });
  return { documents: known ? next : [...documents], known };
}

/** Put whole records into the list: new ones first (the API lists newest first), known ones
 * replaced unless the list already holds a later version of the row. */
export function upsertDocuments(
  documents: readonly KnowledgeDocument[],
  incoming: readonly KnowledgeDocument[],
): KnowledgeDocument[] {
  const byId = new Map(incoming.map((document) => [document.id, document]));
  const replaced = documents.map((document) => {
    const fresh = byId.get(document.id);
    if (!fresh) return document;
    byId.delete(document.id);
    return fresh.updated_at >= document.updated_at ? fresh : document;
  });
  const added = incoming.filter((document) => byId.has(document.id));
  return [...added, ...replaced];
}

/** Replace the whole list with a fresh answer of GET .../documents/ (a poll or a reload). */
export function replaceDocuments(
  documents: readonly KnowledgeDocument[],
  fresh: readonly KnowledgeDocument[],
): KnowledgeDocument[] {
  const current = new Map(documents.map((document) => [document.id, document]));
  return fresh.map((document) => {
    const known = current.get(document.id);
    return known && known.updated_at > document.updated_at ? known : document;
  });
}

export function removeDocument(
  documents: readonly KnowledgeDocument[],
  id: string,
): KnowledgeDocument[] {
  return documents.filter((document) => document.id !== id);
}

export type FeedState = "connecting" | "live" | "polling";

/** Poll the list when the socket is not live and something may still change. */
export function shouldPoll(feed: FeedState, documents: readonly KnowledgeDocument[]): boolean {
  return feed === "polling" && documents.some((document) => isWorking(document.status));
}

export const POLL_INTERVAL_MS = 4000;

/** Wait before the next reconnection attempt: 1 s, 2 s, 4 s... at most 30 s. */
export function reconnectDelay(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attempt));
}
