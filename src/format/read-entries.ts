import { DTYPES, type Dtype, isDtype } from "./dtype.ts";
import type { Entry } from "./entry.ts";
import { fail } from "./errors.ts";
import { TENSOR_ORDER, type TensorName } from "./header.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "./json.ts";
import { MAX_CLASSES, MAX_HIDDEN } from "./limits.ts";
import type { Meta } from "./read-metadata.ts";
import { show } from "./show.ts";

const isCount = (v: JsonValue | undefined): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Checks 20–29: tensor names, entries, dtypes, shapes, labels count, offsets. */
export function readEntries(header: JsonObject, meta: Meta): { entries: Entry[]; dtype: Dtype } {
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const unknown = names.filter((k) => !(TENSOR_ORDER as readonly string[]).includes(k)).sort();
  if (unknown.length > 0) {
    fail(
      "tensor_unknown",
      `tensors ${unknown.map(show).join(", ")} are not R, head.weight, head.bias`,
      {
        value: unknown,
        allowed: TENSOR_ORDER,
      },
    );
  }
  if (!names.includes("R")) fail("tensor_missing", "the file has no tensor R");
  const hasWeight = names.includes("head.weight");
  if (hasWeight !== names.includes("head.bias")) {
    fail(
      "head_incomplete",
      `a head needs both head.weight and head.bias; only ${hasWeight ? "head.weight" : "head.bias"} is present`,
    );
  }
  // Checked in file-writer order: R, head.bias, head.weight.
  const present = TENSOR_ORDER.filter((n) => names.includes(n));
  const raw = present.map((name) => {
    const e = header[name];
    const keys = isJsonObject(e) ? Object.keys(e).sort().join(",") : "";
    if (!isJsonObject(e) || keys !== "data_offsets,dtype,shape") {
      fail(
        "tensor_entry_invalid",
        `${name} is ${show(e)}; expected an object with exactly dtype, shape, data_offsets`,
        { tensor: name },
      );
    }
    return { name, e };
  });
  for (const { name, e } of raw) {
    if (!isDtype(e.dtype)) {
      fail(
        "dtype_unsupported",
        `${name} dtype ${show(e.dtype)} is not one of ${DTYPES.join(", ")}`,
        {
          tensor: name,
          value: e.dtype,
          allowed: DTYPES,
        },
      );
    }
  }
  const dtype = (raw[0] as { e: JsonObject }).e.dtype as Dtype;
  for (const { name, e } of raw) {
    if (e.dtype !== dtype) {
      fail("dtype_mixed", `${name} is ${e.dtype} but R is ${dtype}; all tensors share one dtype`, {
        tensor: name,
        value: e.dtype,
        expected: dtype,
      });
    }
  }
  for (const { name, e } of raw) {
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      fail("shape_invalid", `${name} shape ${show(shape)} is not a list of non-negative integers`, {
        tensor: name,
        value: shape,
      });
    }
  }
  const shapeOf = (name: TensorName) =>
    (raw.find((t) => t.name === name)?.e.shape ?? []) as number[];
  const r = shapeOf("R");
  const rExpected = [meta.modules, meta.rank, meta.rank];
  if (r.length !== 3 || r.some((d, i) => d !== rExpected[i])) {
    fail(
      "shape_mismatch",
      `R shape [${r.join(", ")}] is not [modules, rank, rank] = [${rExpected.join(", ")}]`,
      {
        tensor: "R",
        value: r,
        expected: rExpected,
      },
    );
  }
  let classes = 0;
  if (hasWeight) {
    const w = shapeOf("head.weight");
    const b = shapeOf("head.bias");
    const [c = 0, h = 0] = w;
    if (w.length !== 2 || c < 1 || c > MAX_CLASSES || h < 1 || h > MAX_HIDDEN) {
      fail(
        "shape_mismatch",
        `head.weight shape [${w.join(", ")}] is not [classes, hidden] with classes in 1..${MAX_CLASSES} and hidden in 1..${MAX_HIDDEN}`,
        { tensor: "head.weight", value: w, limit: [MAX_CLASSES, MAX_HIDDEN] },
      );
    }
    if (b.length !== 1 || b[0] !== c) {
      fail("shape_mismatch", `head.bias shape [${b.join(", ")}] is not [classes] = [${c}]`, {
        tensor: "head.bias",
        value: b,
        expected: [c],
      });
    }
    classes = c;
  }
  if (meta.labels !== undefined && meta.labels.length !== classes) {
    fail(
      "labels_mismatch",
      hasWeight
        ? `${meta.labels.length} labels for a head of ${classes} classes`
        : `${meta.labels.length} labels but the file has no head`,
      { value: meta.labels.length, expected: classes },
    );
  }
  const entries = raw.map(({ name, e }): Entry => {
    const o = e.data_offsets;
    if (!Array.isArray(o) || o.length !== 2 || !isCount(o[0]) || !isCount(o[1]) || o[0] > o[1]) {
      fail(
        "offsets_invalid",
        `${name} data_offsets ${show(o)} is not [begin, end] of integers with 0 ≤ begin ≤ end`,
        {
          tensor: name,
          value: o,
        },
      );
    }
    return { name, dtype, shape: e.shape as number[], begin: o[0] as number, end: o[1] as number };
  });
  return { entries, dtype };
}
