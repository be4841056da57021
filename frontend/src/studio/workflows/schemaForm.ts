// Turns a node type's JSON Schema (pydantic's) into what the form library draws well, and
// the validator's problems into the form's per-field errors.
import type { JsonSchema, Problem } from "./types";

type Schema = Record<string, unknown>;

/** `anyOf: [X, {type: null}]` (pydantic's Optional) becomes X with the outer title and
 * description; a null default is dropped, so the field starts empty rather than "null". */
export function simplifySchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(simplifySchema);
  if (!schema || typeof schema !== "object") return schema;
  const source = schema as Schema;
  let result: Schema = {};
  for (const [key, value] of Object.entries(source)) {
    result[key] = key === "default" || key === "const" || key === "enum" ? value : simplifySchema(value);
  }
  const anyOf = result.anyOf;
  if (Array.isArray(anyOf)) {
    const options = (anyOf as Schema[]).filter((option) => option.type !== "null");
    if (options.length === 1 && options.length < anyOf.length) {
      const { anyOf: _dropped, ...outer } = result;
      result = { ...options[0], ...outer };
    }
  }
  if (result.default === null) delete result.default;
  return result;
}

export interface FieldUi {
  [key: string]: unknown;
}

/** uiSchema: template fields get the template widget (variables offered), long text a
 * text area; `title`-less properties keep their generated titles. */
export function uiSchemaFor(schema: JsonSchema, templateFields: string[]): FieldUi {
  // The panel's heading already names the type: no title over the whole form.
  const ui: FieldUi = { "ui:submitButtonOptions": { norender: true }, "ui:options": { label: false } };
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  for (const path of templateFields) {
    // `cases.*.left`: a field of every item of a list.
    const [list, star, field] = path.split(".");
    if (star === "*" && field) {
      const listUi = (ui[list] ?? {}) as FieldUi;
      const items = (listUi.items ?? {}) as FieldUi;
      ui[list] = { ...listUi, items: { ...items, [field]: { "ui:widget": "template" } } };
    }
  }
  for (const [name, property] of Object.entries(properties)) {
    if (templateFields.includes(name)) {
      ui[name] = { "ui:widget": "template" };
    } else if (property.type === "string" && typeof property.maxLength === "number" && property.maxLength > 200) {
      ui[name] = { "ui:widget": "textarea" };
    }
  }
  return ui;
}

export interface ErrorTree {
  __errors?: string[];
  [key: string]: ErrorTree | string[] | undefined;
}

/** The validator's problems of one node (field `config.a.0.b`) as the form's error tree. */
export function errorTree(problems: Problem[]): ErrorTree {
  const tree: ErrorTree = {};
  for (const problem of problems) {
    if (!problem.field || !problem.field.startsWith("config")) continue;
    const path = problem.field.split(".").slice(1);
    let at: ErrorTree = tree;
    for (const part of path) {
      at[part] = (at[part] as ErrorTree | undefined) ?? {};
      at = at[part] as ErrorTree;
    }
    at.__errors = [...(at.__errors ?? []), problem.message];
  }
  return tree;
}

/** Problems that the form cannot place on a field (shown above it). */
export function nodeLevelProblems(problems: Problem[]): Problem[] {
  return problems.filter((p) => !p.field || !p.field.startsWith("config.") || p.field === "config");
}
