// The shapes the knowledge API answers (knowledge/api.py serializers, docs/knowledge.md).

export type DocumentStatus =
  | "queued"
  | "parsing"
  | "splitting"
  | "embedding"
  | "indexed"
  | "failed";

export interface KnowledgeBase {
  id: number;
  name: string;
  description: string;
  embedding_endpoint: number | null;
  chunk_size: number;
  chunk_overlap: number;
  document_count: number;
  created_by: string | null;
  created_at: string;
  updated_at: string;
  /** The caller's actions on the base (the detail endpoint only). */
  permissions?: string[];
}

export interface KnowledgeDocument {
  id: string;
  knowledge_base: number;
  filename: string;
  title: string;
  kind: string;
  size: number;
  sha256: string;
  status: DocumentStatus;
  error: string;
  chunk_count: number;
  pages: number | null;
  enabled: boolean;
  created_at: string;
  updated_at: string;
}

/** What the WebSocket /ws/knowledge/<id>/ sends on every status change of a document. */
export interface StatusUpdate {
  id: string;
  status: DocumentStatus;
  error: string;
  chunk_count: number;
  enabled: boolean;
  title: string;
}

export interface Passage {
  text: string;
  document_id: string;
  document_title: string;
  location: string;
  score: number;
  chunk_id: string;
}

export type SearchMode = "hybrid" | "vector" | "keyword";

export interface SearchResult {
  passages: Passage[];
  reranked: boolean;
  rerank_error: string;
}

export interface PageOf<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}
