// A strict JSON parser for safetensors headers. JSON.parse is not used because it cannot
// tell `1.0` from `1` (the official reader rejects `1.0` as a size), silently keeps the last
// of duplicate keys, and turns `__proto__` into a prototype. scripts/loraxs/format/strict_json.py
// applies the same rules to Python's json module, so both readers agree on every header.

import { MAX_INTEGER_DIGITS, MAX_JSON_DEPTH } from "./limits.ts";

/** A number written with a fraction or exponent, as `-0`, or with too many digits. */
export class JsonNonInteger {
  readonly source: string;
  constructor(source: string) {
    this.source = source;
  }
}

export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonNonInteger
  | JsonValue[]
  | JsonObject;
/** A null-prototype object, keys in the order they appear. */
export type JsonObject = { [key: string]: JsonValue };

export class JsonSyntaxError extends Error {
  readonly position: number;
  constructor(message: string, position: number) {
    super(`${message} at position ${position}`);
    this.position = position;
  }
}

const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof JsonNonInteger);
}

/** Parses one JSON value that may be surrounded by whitespace (space, tab, LF, CR). */
export function parseJson(text: string): JsonValue {
  let i = 0;

  const skip = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };

  const string = (): string => {
    const start = i;
    i++; // opening quote
    let out = "";
    let run = i;
    for (;;) {
      if (i >= text.length) throw new JsonSyntaxError("unterminated string", start);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(run, i);
        i++;
        break;
      }
      if (c < 0x20) throw new JsonSyntaxError("control character in string", i);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(run, i);
      const e = text[i + 1];
      i += 2;
      if (e === '"') out += '"';
      else if (e === "\\") out += "\\";
      else if (e === "/") out += "/";
      else if (e === "b") out += "\b";
      else if (e === "f") out += "\f";
      else if (e === "n") out += "\n";
      else if (e === "r") out += "\r";
      else if (e === "t") out += "\t";
      else if (e === "u") {
        const hex = text.slice(i, i + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new JsonSyntaxError("bad \\u escape", i - 2);
        out += String.fromCharCode(Number.parseInt(hex, 16));
        i += 4;
      } else throw new JsonSyntaxError("bad escape", i - 2);
      run = i;
    }
    if (LONE_SURROGATE.test(out)) throw new JsonSyntaxError("unpaired surrogate in string", start);
    return out;
  };

  const value = (depth: number): JsonValue => {
    skip();
    const c = text[i];
    if (c === "{" || c === "[") {
      if (depth >= MAX_JSON_DEPTH) {
        throw new JsonSyntaxError(`nesting deeper than ${MAX_JSON_DEPTH}`, i);
      }
      i++;
      skip();
      if (c === "[") {
        const arr: JsonValue[] = [];
        if (text[i] === "]") {
          i++;
          return arr;
        }
        for (;;) {
          arr.push(value(depth + 1));
          skip();
          if (text[i] === ",") i++;
          else if (text[i] === "]") {
            i++;
            return arr;
          } else throw new JsonSyntaxError("expected ',' or ']'", i);
        }
      }
      const obj: JsonObject = Object.create(null);
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        skip();
        if (text[i] !== '"') throw new JsonSyntaxError("expected a string key", i);
        const keyAt = i;
        const key = string();
        if (Object.hasOwn(obj, key)) throw new JsonSyntaxError(`duplicate key "${key}"`, keyAt);
        skip();
        if (text[i] !== ":") throw new JsonSyntaxError("expected ':'", i);
        i++;
        obj[key] = value(depth + 1);
        skip();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return obj;
        } else throw new JsonSyntaxError("expected ',' or '}'", i);
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m === null) throw new JsonSyntaxError("unexpected character", i);
    const src = m[0];
    i += src.length;
    const digits = src.startsWith("-") ? src.length - 1 : src.length;
    if (/[.eE]/.test(src) || src === "-0" || digits > MAX_INTEGER_DIGITS) {
      return new JsonNonInteger(src);
    }
    return Number(src);
  };

  const result = value(0);
  skip();
  if (i !== text.length) throw new JsonSyntaxError("unexpected text after the value", i);
  return result;
}
