// The settings form's validator. The server validates every node (its problems are shown on
// the fields), so the form only needs to tell which option of an anyOf/oneOf some data
// fits. A structural check does that without compiling schemas to code: ajv's compiler
// needs `eval`, which the site's Content-Security-Policy forbids, and weighs ~100 kB.
import type { RJSFSchema, ValidationData, ValidatorType } from "@rjsf/utils";

type Schema = Record<string, unknown>;

function resolve(schema: Schema, root: Schema): Schema {
  const ref = schema.$ref;
  if (typeof ref !== "string" || !ref.startsWith("#/")) return schema;
  let target: unknown = root;
  for (const part of ref.slice(2).split("/")) {
    target = target && typeof target === "object" ? (target as Schema)[part] : undefined;
  }
  return target && typeof target === "object" ? { ...(target as Schema), ...schema, $ref: undefined } : schema;
}

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function typeMatches(expected: unknown, value: unknown): boolean {
  const actual = typeOf(value);
  const allowed = Array.isArray(expected) ? expected : [expected];
  return allowed.some((type) => type === actual || (type === "number" && actual === "integer"));
}

/** Whether `value` has the shape `schema` describes (types, const, enum, required keys). */
export function fits(schemaIn: Schema, value: unknown, root: Schema, depth = 0): boolean {
  if (depth > 20) return true;
  const schema = resolve(schemaIn, root);
  if ("const" in schema && schema.const !== undefined) {
    return JSON.stringify(schema.const) === JSON.stringify(value);
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((v) => JSON.stringify(v) === JSON.stringify(value))) {
    return false;
  }
  if (Array.isArray(schema.anyOf) && !schema.anyOf.some((s) => fits(s as Schema, value, root, depth + 1))) {
    return false;
  }
  if (Array.isArray(schema.oneOf) && !schema.oneOf.some((s) => fits(s as Schema, value, root, depth + 1))) {
    return false;
  }
  if (Array.isArray(schema.allOf) && !schema.allOf.every((s) => fits(s as Schema, value, root, depth + 1))) {
    return false;
  }
  if (schema.type !== undefined && value !== undefined && !typeMatches(schema.type, value)) return false;
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const record = value as Record<string, unknown>;
    const required = Array.isArray(schema.required) ? (schema.required as string[]) : [];
    if (required.some((key) => !(key in record))) return false;
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const [key, property] of Object.entries(properties)) {
      if (key in record && !fits(property, record[key], root, depth + 1)) return false;
    }
  }
  return true;
}

export const formValidator: ValidatorType = {
  validateFormData: (): ValidationData<unknown> => ({ errors: [], errorSchema: {} }),
  isValid: (schema: RJSFSchema, formData: unknown, rootSchema: RJSFSchema) =>
    fits(schema as Schema, formData, rootSchema as Schema),
  rawValidation: () => ({ errors: [], validationError: undefined }),
};

// Stands in for @rjsf/validator-ajv8's default export (vite.config.ts aliases it here).
export default formValidator;
