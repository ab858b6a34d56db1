// The TypeScript and Python readers on thousands of mutated files: same verdict and code for
// every one (the spec's promise that both run the same checks in the same order).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AdapterFormatError, decodeAdapter } from "../../../src/format/index.ts";
import { mulberry32 } from "../../fixtures/mulberry32.ts";
import { canRun, PYTHON } from "../../shared/requirements.ts";
import { bytesOf, cases } from "./fixtures.ts";

const root = new URL("../../..", import.meta.url).pathname;
const python = join(root, ".venv", "bin", "python");

/** A seeded generator of numbers in [0, n). */
function rng(seed: number) {
  const next = mulberry32(seed);
  return (n: number) => next() * n;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Header-aware edits: replace one JSON token of the header text with a tricky one. */
const TOKENS = [
  '"',
  "1.0",
  "-0",
  "1e2",
  "0",
  "-1",
  "99999999999999999",
  "null",
  "[]",
  "{}",
  '"F64"',
  '"BF16"',
  '"x"',
  ",",
  ":",
  "]",
  "}",
  '"R"',
  '"head.bias"',
  '"__proto__"',
  '"\\ud800"',
  '"\\u0000"',
  "NaN",
  " ",
  "\t",
  "\ufeff",
];

function mutate(base: Uint8Array, r: (n: number) => number): Uint8Array {
  const b = base.slice();
  const n = new DataView(b.buffer).getUint32(0, true);
  const kind = Math.floor(r(5));
  if (kind === 0) {
    // flip a bit, mostly inside the header
    const at = r(1) < 0.8 ? 8 + Math.floor(r(n)) : Math.floor(r(b.length));
    b[at] = (b[at] as number) ^ (1 << Math.floor(r(8)));
    return b;
  }
  if (kind === 1) return b.slice(0, Math.floor(r(b.length)));
  if (kind === 2) {
    // change the declared header length a little
    new DataView(b.buffer).setUint32(0, Math.max(0, n + Math.floor(r(17)) - 8), true);
    return b;
  }
  // token edits in the header text, keeping the length field right
  let text = dec.decode(b.subarray(8, 8 + n));
  const edits = 1 + Math.floor(r(2));
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(r(text.length));
    const len = Math.floor(r(6));
    text =
      text.slice(0, at) + (TOKENS[Math.floor(r(TOKENS.length))] as string) + text.slice(at + len);
  }
  const header = enc.encode(text);
  const out = new Uint8Array(8 + header.length + (b.length - 8 - n));
  new DataView(out.buffer).setUint32(0, header.length, true);
  out.set(header, 8);
  out.set(b.subarray(8 + n), 8 + header.length);
  return out;
}

function tsVerdict(b: Uint8Array): string {
  try {
    decodeAdapter(b);
    return "valid";
  } catch (e) {
    if (e instanceof AdapterFormatError) return e.code;
    throw e;
  }
}

const PY = `
import base64, json, sys
from loraxs.format import AdapterFormatError, decode_adapter
out = []
for line in sys.stdin:
    try:
        decode_adapter(base64.b64decode(line)); out.append("valid")
    except AdapterFormatError as e:
        out.append(e.code)
print(json.dumps(out))
`;

const suite = "TypeScript and Python readers agree";
describe.skipIf(!canRun(suite, PYTHON))(suite, () => {
  it("on 3000 mutations of the valid fixtures", () => {
    const valid = cases.filter((c) => c.verdict === "valid").map(bytesOf);
    const r = rng(20261128);
    const files: Uint8Array[] = [];
    for (let i = 0; i < 3000; i++) files.push(mutate(valid[i % valid.length] as Uint8Array, r));
    const ts = files.map(tsVerdict);
    const p = spawnSync(python, ["-c", PY], {
      input: files.map((f) => Buffer.from(f).toString("base64")).join("\n"),
      encoding: "utf8",
      env: { ...process.env, PYTHONPATH: join(root, "scripts") },
      maxBuffer: 64 << 20,
    });
    expect(p.status, p.stderr).toBe(0);
    const py: string[] = JSON.parse(p.stdout);
    const differ = files
      .map((f, i) => ({ i, ts: ts[i], py: py[i], header: dec.decode(f.subarray(8, 200)) }))
      .filter((d) => d.ts !== d.py);
    expect(differ.slice(0, 5)).toEqual([]);
    // The mutations reach deep into the checks, not just the first few.
    expect(new Set(ts).size).toBeGreaterThan(20);
  });
});
