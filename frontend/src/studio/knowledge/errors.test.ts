import { describe, expect, it } from "vitest";
import { ApiError } from "../../shared/api";
import { errorMessage, fieldErrors, messagesOf } from "./errors";
import { formatBytes, formatScore, parseTopK } from "./format";

describe("API error messages", () => {
  it("flattens DRF bodies, nested ones included", () => {
    expect(messagesOf({ files: { "0": ["The submitted file is empty."] } })).toEqual([
      "The submitted file is empty.",
    ]);
    expect(errorMessage(new ApiError(400, { files: ["big.txt: file larger than 1 MB"] }))).toBe(
      "big.txt: file larger than 1 MB",
    );
    expect(errorMessage(new ApiError(404, { detail: "Not found." }))).toBe("Not found.");
    expect(errorMessage(new ApiError(500, {}))).toBe("HTTP 500");
  });

  it("puts field errors next to their fields and the rest in general", () => {
    const body = {
      name: ["This field may not be blank."],
      chunk_overlap: ["must be less than half the chunk size"],
      embedding_endpoint: ["not an embedding endpoint"],
      non_field_errors: ["Something else."],
    };
    expect(fieldErrors(body, ["name", "chunk_size", "chunk_overlap"])).toEqual({
      fields: {
        name: "This field may not be blank.",
        chunk_overlap: "must be less than half the chunk size",
      },
      general: ["embedding_endpoint: not an embedding endpoint", "Something else."],
    });
  });
});

describe("formatting", () => {
  it("writes sizes and scores as people read them", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(50 * 1024 * 1024)).toBe("50 MB");
    expect(formatScore(0.91234)).toBe("0.912");
  });

  it("accepts a top-k from 1 to 50 only", () => {
    expect(parseTopK("5")).toBe(5);
    expect(parseTopK(" 50 ")).toBe(50);
    for (const text of ["0", "51", "2.5", "", "abc", "-1"]) expect(parseTopK(text)).toBeNull();
  });
});
