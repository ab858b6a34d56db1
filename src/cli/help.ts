import type { Command } from "./command.ts";

const PROGRAM = "loraxs";

/** `loraxs <command> --help`. */
export function commandHelp(command: Command): string {
  const positionals = command.positionals.map((p) => `<${p.name}>`).join(" ");
  const lines = [
    `usage: ${PROGRAM} ${command.name}${positionals ? ` ${positionals}` : ""} [options]`,
    "",
    command.summary,
  ];
  if (command.positionals.length > 0) {
    lines.push("", "arguments:");
    for (const p of command.positionals) lines.push(row(`<${p.name}>`, p.description));
  }
  lines.push("", "options:");
  for (const [name, spec] of Object.entries(command.options)) {
    lines.push(row(`--${name}${spec.value ? ` ${spec.value}` : ""}`, spec.description));
  }
  lines.push(row("-h, --help", "show this help"));
  if (command.details) lines.push("", command.details.trim());
  lines.push(
    "",
    "exit codes: 0 ok, 1 invalid input, 2 usage, 3 network/API, 4 auth (401/403), 5 conflict (412/409), 6 not found (404)",
  );
  return `${lines.join("\n")}\n`;
}

/** `loraxs --help`: every command with its one-line summary. */
export function programHelp(commands: readonly Command[]): string {
  const lines = [
    `usage: ${PROGRAM} <command> [options]`,
    "",
    "Per-user LoRA-XS adapters: inspect, convert to/from PEFT LoRA, push/pull to the edge API.",
    "",
    "commands:",
  ];
  for (const c of commands) lines.push(row(c.name, c.summary));
  lines.push(
    "",
    `Run \`${PROGRAM} <command> --help\` for a command's options. Exit codes are listed in docs/cli.md.`,
  );
  return `${lines.join("\n")}\n`;
}

const COLUMN = 24; // option names are short; descriptions start at one column

function row(left: string, right: string): string {
  return left.length >= COLUMN - 2
    ? `  ${left}\n  ${" ".repeat(COLUMN)}${right}`
    : `  ${left.padEnd(COLUMN)}${right}`;
}
