import { DTYPE_BYTES } from "./dtype.ts";
import type { Entry } from "./entry.ts";
import { fail } from "./errors.ts";

/** Checks 30–34: the byte layout of the data section. */
export function checkLayout(entries: Entry[], dataLength: number): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev = "the start of the data";
  for (const t of sorted) {
    if (t.begin < at) {
      fail("offsets_overlap", `${t.name} starts at ${t.begin}, inside ${prev} (ends at ${at})`, {
        tensor: t.name,
        value: t.begin,
        limit: at,
      });
    }
    if (t.begin > at) {
      fail(
        "offsets_gap",
        `${t.name} starts at ${t.begin}, leaving a gap after ${prev} (ends at ${at})`,
        {
          tensor: t.name,
          value: t.begin,
          expected: at,
        },
      );
    }
    at = t.end;
    prev = t.name;
  }
  if (at > dataLength) {
    fail(
      "offsets_out_of_bounds",
      `tensor data ends at ${at}, past the ${dataLength} bytes after the header`,
      {
        value: at,
        limit: dataLength,
      },
    );
  }
  if (at < dataLength) {
    fail("trailing_bytes", `tensor data ends at ${at} but ${dataLength} bytes follow the header`, {
      value: dataLength - at,
      expected: at,
    });
  }
  for (const t of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const expected = count * DTYPE_BYTES[t.dtype];
    if (t.end - t.begin !== expected) {
      fail(
        "tensor_size_mismatch",
        `${t.name} spans ${t.end - t.begin} bytes; shape [${t.shape.join(", ")}] of ${t.dtype} needs ${expected}`,
        { tensor: t.name, value: t.end - t.begin, expected },
      );
    }
  }
}
