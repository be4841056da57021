import { describe, expect, it } from "vitest";
import { fits } from "./formValidator";

const root = {
  $defs: { Auth: { type: "object", required: ["credential"], properties: { credential: { type: "string" } } } },
};

describe("fits", () => {
  it("tells the options of a string-or-object field apart", () => {
    const options = [{ type: "string" }, { type: "object" }];
    expect(options.map((o) => fits(o, "{}", root))).toEqual([true, false]);
    expect(options.map((o) => fits(o, { a: 1 }, root))).toEqual([false, true]);
  });

  it("follows $ref, required keys, const and enum", () => {
    expect(fits({ $ref: "#/$defs/Auth" }, { credential: "k" }, root)).toBe(true);
    expect(fits({ $ref: "#/$defs/Auth" }, {}, root)).toBe(false);
    expect(fits({ const: "bearer" }, "bearer", root)).toBe(true);
    expect(fits({ enum: ["a", "b"] }, "c", root)).toBe(false);
    expect(fits({ type: "number" }, 3, root)).toBe(true);
    expect(fits({ type: "integer" }, 3.5, root)).toBe(false);
  });
});
