import { withApi } from "../api.ts";
import type { Command } from "../command.ts";
import { EXIT, UsageError } from "../errors.ts";
import { TARGET_OPTIONS, targetFrom } from "../target.ts";

export const rm: Command = {
  name: "rm",
  summary: "Delete the user's adapter: every version and cached copy (DELETE …/adapter).",
  positionals: [],
  options: {
    ...TARGET_OPTIONS,
    yes: {
      type: "boolean",
      description: "confirm: the history is deleted too and cannot be restored",
    },
  },
  async run(args, io) {
    const target = targetFrom(args, io, "rm");
    if (args.values.yes !== true) {
      throw new UsageError(
        `rm deletes every version of ${target.model}/${target.user}; pass --yes to confirm`,
        "rm",
      );
    }
    await withApi(io, target, "DELETE", (api) => api.deleteAdapter(target.model, target.user));
    io.stdout(`deleted ${target.model}/${target.user}\n`);
    return EXIT.ok;
  },
};
