import { withApi } from "../api.ts";
import type { Command } from "../command.ts";
import { EXIT } from "../errors.ts";
import { TARGET_OPTIONS, targetFrom } from "../target.ts";

export const versions: Command = {
  name: "versions",
  summary: "List the versions of the user's adapter, newest first.",
  positionals: [],
  options: {
    ...TARGET_OPTIONS,
    json: { type: "boolean", description: "print the API's answer as JSON" },
  },
  async run(args, io) {
    const target = targetFrom(args, io, "versions");
    const versions = await withApi(io, target, "GET", (api) =>
      api.listVersions(target.model, target.user),
    );
    const body = { versions };
    if (args.values.json) {
      io.stdout(`${JSON.stringify(body, null, 2)}\n`);
      return EXIT.ok;
    }
    const rows = [["version", "created", "bytes", "source", "etag"]];
    for (const v of versions) {
      rows.push([String(v.version), v.created ?? "", String(v.bytes), v.source ?? "", v.etag]);
    }
    const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length))) ?? [];
    for (const r of rows)
      io.stdout(
        `${r
          .map((cell, c) => cell.padEnd(widths[c] ?? 0))
          .join("  ")
          .trimEnd()}\n`,
      );
    return EXIT.ok;
  },
};
