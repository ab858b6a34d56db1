// Kebab-case flags for the start, seed and publish scripts: --name value, --name=value, --no-name.
import { ScriptError } from "./log.mjs";

/**
 * Parses argv against a spec `{ name: { type: "string" | "number" | "float" | "boolean", default, help } }`.
 * Unknown flags fail with the list of known ones.
 */
export function parseArgs(argv, spec, usage) {
  const values = {};
  for (const [name, option] of Object.entries(spec)) values[name] = option.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") {
      console.log(helpText(spec, usage));
      process.exit(0);
    }
    const match = /^--(no-)?([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    const name = match?.[2];
    const option = name === undefined ? undefined : spec[name];
    if (!match || !option) {
      throw new ScriptError(
        `unknown argument ${JSON.stringify(arg)}; known: ${Object.keys(spec)
          .map((k) => `--${k}`)
          .join(", ")}`,
      );
    }
    if (option.type === "boolean") {
      if (match[3] !== undefined)
        throw new ScriptError(`--${name} takes no value (got ${JSON.stringify(match[3])})`);
      values[name] = match[1] === undefined;
      continue;
    }
    if (match[1]) throw new ScriptError(`--no-${name} is not a switch; give --${name} <value>`);
    const raw = match[3] ?? argv[++i];
    if (raw === undefined) throw new ScriptError(`--${name} needs a value`);
    values[name] =
      option.type === "number"
        ? parseNumber(name, raw)
        : option.type === "float"
          ? parseFloatValue(name, raw)
          : raw;
  }
  for (const [name, option] of Object.entries(spec)) {
    if (option.required && (values[name] === undefined || values[name] === "")) {
      throw new ScriptError(`--${name} is required\n${helpText(spec, usage)}`);
    }
  }
  return values;
}

function parseNumber(name, raw) {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new ScriptError(`--${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function parseFloatValue(name, raw) {
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    throw new ScriptError(`--${name} must be a positive number, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function helpText(spec, usage) {
  const lines = Object.entries(spec).map(([name, option]) => {
    const flag = option.type === "boolean" ? `--[no-]${name}` : `--${name} <${option.type}>`;
    const fallback =
      option.default === undefined ? "" : ` (default ${JSON.stringify(option.default)})`;
    return `  ${flag.padEnd(28)} ${option.help}${fallback}`;
  });
  return `${usage}\n\n${lines.join("\n")}`;
}
