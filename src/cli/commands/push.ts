import { decodeOrFail, readInputFile } from "../adapter-file.ts";
import { withApi } from "../api.ts";
import { optionalOption } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT, InvalidInputError } from "../errors.ts";
import { quotedEtag, TARGET_OPTIONS, targetFrom } from "../target.ts";
import { printWrite } from "./write-result.ts";

export const push: Command = {
  name: "push",
  summary: "Upload an adapter as the user's new current version (PUT …/adapter).",
  positionals: [{ name: "adapter", description: "adapter file (.safetensors)" }],
  options: {
    ...TARGET_OPTIONS,
    model: { type: "string", value: "ID", description: "model id (default: the adapter's model)" },
    "if-match": {
      type: "string",
      value: "ETAG",
      description: "only replace the version with this ETag (else 412, exit 5)",
    },
    json: { type: "boolean", description: "print the API's answer as JSON" },
  },
  details: `The adapter is validated locally first (exit 1 if invalid or made for another model).
Prints the new version and ETag; pass that ETag as --if-match next time to avoid overwriting a
version someone else pushed in between.`,
  async run(args, io) {
    const file = await readInputFile(args.positionals[0] as string, io.cwd, "adapter");
    const adapter = decodeOrFail(file.bytes, file.path);
    const target = targetFrom(args, io, "push", adapter.model);
    if (adapter.model !== target.model) {
      throw new InvalidInputError(
        `${file.path} is an adapter for model ${JSON.stringify(adapter.model)}; --model is ${JSON.stringify(target.model)}`,
        "push it to its own model, or convert it with import-peft",
      );
    }
    const ifMatch = optionalOption(args, "if-match");
    const stored = await withApi(io, target, "PUT", (api) =>
      api.putAdapter(target.model, target.user, file.bytes, {
        ...(ifMatch ? { ifMatch: quotedEtag(ifMatch) } : {}),
      }),
    );
    printWrite(io, stored, target, args.values.json === true, "pushed");
    return EXIT.ok;
  },
};
