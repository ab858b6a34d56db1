import { withApi } from "../api.ts";
import type { Command } from "../command.ts";
import { EXIT } from "../errors.ts";
import { TARGET_OPTIONS, targetFrom } from "../target.ts";
import { printWrite } from "./write-result.ts";

export const restore: Command = {
  name: "restore",
  summary: "Make an older version the current adapter again (as a new version).",
  positionals: [{ name: "version", description: "the version to restore (see `loraxs versions`)" }],
  options: {
    ...TARGET_OPTIONS,
    json: { type: "boolean", description: "print the API's answer as JSON" },
  },
  async run(args, io) {
    const target = targetFrom(args, io, "restore");
    const version = args.positionals[0] as string;
    const stored = await withApi(io, target, "POST", (api) =>
      api.restoreVersion(target.model, target.user, version),
    );
    printWrite(io, stored, target, args.values.json === true, `restored version ${version} of`);
    return EXIT.ok;
  },
};
