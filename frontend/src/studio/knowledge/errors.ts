// Turning API error bodies into what the page shows: one sentence, or messages per field.
import { ApiError } from "../../shared/api";

/** Every message string in a DRF error value (a string, a list, or nested objects such as
 * {"files": {"0": ["The submitted file is empty."]}}). */
export function messagesOf(value: unknown): string[] {
  if (typeof value === "string") return value ? [value] : [];
  if (Array.isArray(value)) return value.flatMap(messagesOf);
  if (value && typeof value === "object") return Object.values(value).flatMap(messagesOf);
  if (value === null || value === undefined) return [];
  return [String(value)];
}

export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    const messages = messagesOf(error.body);
    return messages.length ? messages.join(" ") : error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

export interface FieldErrors {
  fields: Record<string, string>;
  general: string[];
}

/** Split a 400 body into the form's own fields and the rest (detail, non_field_errors,
 * fields the form does not show). */
export function fieldErrors(body: Record<string, unknown>, fields: readonly string[]): FieldErrors {
  const result: FieldErrors = { fields: {}, general: [] };
  for (const [name, value] of Object.entries(body)) {
    const messages = messagesOf(value);
    if (!messages.length) continue;
    if (fields.includes(name)) result.fields[name] = messages.join(" ");
    else if (name === "detail" || name === "non_field_errors") result.general.push(...messages);
    else result.general.push(`${name}: ${messages.join(" ")}`);
  }
  return result;
}
