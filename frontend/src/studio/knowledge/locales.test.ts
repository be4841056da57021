import { describe, expect, it } from "vitest";
import { knowledgeStrings } from "./locales";

const base = (key: string) => key.replace(/_(one|other)$/, "");
const components = import.meta.glob<string>("./*.tsx", {
  query: "?raw",
  import: "default",
  eager: true,
});

describe("knowledge strings", () => {
  it("has every string in both languages (Chinese plurals need only _other)", () => {
    const en = new Set(Object.keys(knowledgeStrings.en).map(base));
    const zh = new Set(Object.keys(knowledgeStrings["zh-Hans"]).map(base));
    expect([...en].filter((key) => !zh.has(key))).toEqual([]);
    expect([...zh].filter((key) => !en.has(key))).toEqual([]);
    for (const [key, value] of Object.entries(knowledgeStrings["zh-Hans"])) {
      if (key.endsWith("_one")) throw new Error(`${key}: Chinese has no singular form`);
      expect(value.trim(), key).not.toBe("");
    }
  });

  it("keeps the same placeholders in both languages", () => {
    const placeholders = (text: string) => [...text.matchAll(/{{(\w+)}}/g)].map((m) => m[1]).sort();
    for (const [key, value] of Object.entries(knowledgeStrings["zh-Hans"])) {
      const english = knowledgeStrings.en[key] ?? knowledgeStrings.en[`${base(key)}_other`];
      expect(placeholders(value), key).toEqual(placeholders(english));
    }
  });

  it("defines every literal key the components ask for", () => {
    const keys = new Set(Object.keys(knowledgeStrings.en).map(base));
    expect(Object.keys(components).length).toBeGreaterThan(3);
    for (const [file, source] of Object.entries(components)) {
      for (const match of source.matchAll(/\bt\(\s*"([a-z_]+)"/g)) {
        expect(keys.has(match[1]), `${file}: ${match[1]}`).toBe(true);
      }
    }
  });
});
