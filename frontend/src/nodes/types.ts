// What the editor knows about one node type beyond its JSON Schema (which the API serves):
// how it looks and which output handles its config gives it. One folder per type,
// frontend/src/nodes/<type_id>/, next to workflows/nodes/<type_id>.py.

export const DEFAULT_HANDLE = "out";
export const ERROR_HANDLE = "error";

export interface NodeUi {
  /** A short symbol shown on the node and in the palette. */
  icon: string;
  /** Accent colour of the node's header. */
  color: string;
  /** Output handles for a config; mirrors the Python type's `branches()`. */
  branches?: (config: Record<string, unknown>) => string[];
  /** Ends a path: no output handle (the `end` node). */
  terminal?: boolean;
  /** One line under the node's name summarising its config. */
  summary?: (config: Record<string, unknown>) => string;
}

export function text(value: unknown, limit = 60): string {
  const plain = typeof value === "string" ? value.replace(/\s+/g, " ").trim() : "";
  return plain.length > limit ? `${plain.slice(0, limit - 1)}…` : plain;
}

export function ids(value: unknown, key: string): string[] {
  if (!Array.isArray(value)) return [];
  const found: string[] = [];
  for (const item of value) {
    const id = item && typeof item === "object" ? (item as Record<string, unknown>)[key] : null;
    if (typeof id === "string" && id && !found.includes(id)) found.push(id);
  }
  return found;
}
