// Calls of the documented knowledge API (docs/knowledge.md); nothing else.
import { api, get, post, upload } from "../../shared/api";
import type {
  KnowledgeBase,
  KnowledgeDocument,
  PageOf,
  SearchMode,
  SearchResult,
} from "./types";

export const paths = {
  bases: "/api/knowledge-bases/",
  create: "/api/knowledge-bases/create/",
  base: (id: number) => `/api/knowledge-bases/${id}/`,
  documents: (id: number) => `/api/knowledge-bases/${id}/documents/`,
  upload: (id: number) => `/api/knowledge-bases/${id}/documents/upload/`,
  search: (id: number) => `/api/knowledge-bases/${id}/search/`,
  document: (id: string) => `/api/documents/${id}/`,
  enable: (id: string) => `/api/documents/${id}/enable/`,
  disable: (id: string) => `/api/documents/${id}/disable/`,
  retry: (id: string) => `/api/documents/${id}/retry/`,
  remove: (id: string) => `/api/documents/${id}/delete/`,
  download: (id: string) => `/api/documents/${id}/download/`,
  socket: (id: number) => `/ws/knowledge/${id}/`,
};

/** Every knowledge base the user may view (the list is paginated: follow `next`). */
export async function listBases(): Promise<KnowledgeBase[]> {
  const bases: KnowledgeBase[] = [];
  let next: string | null = paths.bases;
  while (next) {
    const page: PageOf<KnowledgeBase> = await get<PageOf<KnowledgeBase>>(next);
    bases.push(...page.results);
    next = page.next;
  }
  return bases;
}

export interface BaseInput {
  name: string;
  description: string;
  chunk_size: number;
  chunk_overlap: number;
}

export const createBase = (input: BaseInput) => post<KnowledgeBase>(paths.create, input);
export const getBase = (id: number) => get<KnowledgeBase>(paths.base(id));
export const listDocuments = (id: number) => get<KnowledgeDocument[]>(paths.documents(id));
export const getDocument = (id: string) => get<KnowledgeDocument>(paths.document(id));
export const setEnabled = (id: string, enabled: boolean) =>
  post<KnowledgeDocument>(enabled ? paths.enable(id) : paths.disable(id));
export const retryDocument = (id: string) => post<KnowledgeDocument>(paths.retry(id));
export const deleteDocument = (id: string) => api<void>("DELETE", paths.remove(id));

export function search(
  id: number,
  query: string,
  mode: SearchMode,
  topK: number,
): Promise<SearchResult> {
  return post<SearchResult>(paths.search(id), { query, mode, top_k: topK });
}

/** Upload one file; the API answers the list of created documents (one here). */
export async function uploadDocument(
  baseId: number,
  file: File,
  onProgress: (loaded: number, total: number) => void,
): Promise<KnowledgeDocument[]> {
  const form = new FormData();
  form.append("files", file, file.name);
  // upload() wraps a JSON array answer as {results: [...]}.
  const answer = await upload<{ results?: KnowledgeDocument[] }>(
    paths.upload(baseId),
    form,
    onProgress,
  );
  return answer.results ?? [];
}

