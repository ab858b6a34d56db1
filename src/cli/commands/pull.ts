import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { sha256Hex } from "../../format/index.ts";
import { decodeOrFail } from "../adapter-file.ts";
import { withApi } from "../api.ts";
import { optionalOption, requireOption } from "../args.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT } from "../errors.ts";
import { bareEtag, quotedEtag, TARGET_OPTIONS, targetFrom } from "../target.ts";

export const pull: Command = {
  name: "pull",
  summary: "Download the user's current adapter (or one version) to a file, verified.",
  positionals: [],
  options: {
    ...TARGET_OPTIONS,
    out: { type: "string", value: "FILE", description: "where to write the adapter" },
    version: {
      type: "string",
      value: "V",
      description: "an older version (see `loraxs versions`)",
    },
    "if-none-match": {
      type: "string",
      value: "ETAG",
      description: "skip the download when the current ETag is this one (304)",
    },
  },
  details: `The bytes are checked before the file is written: a valid adapter for --model whose sha256
equals the ETag. Prints the version and ETag.`,
  async run(args, io) {
    const target = targetFrom(args, io, "pull");
    const out = resolve(io.cwd, requireOption(args, "out", "pull"));
    const version = optionalOption(args, "version");
    const ifNoneMatch = optionalOption(args, "if-none-match");
    const response = await withApi(io, target, "GET", (api) =>
      api.getAdapter(target.model, target.user, {
        ...(version ? { version } : {}),
        ...(ifNoneMatch ? { ifNoneMatch: quotedEtag(ifNoneMatch) } : {}),
      }),
    );
    if (response.status === 304) {
      io.stdout(
        `not modified: ${target.model}/${target.user} is still etag ${bareEtag(ifNoneMatch ?? "")}\n`,
      );
      return EXIT.ok;
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    const hex = await sha256Hex(bytes);
    const etag = response.headers.get("etag");
    if (etag && bareEtag(etag) !== hex) {
      throw new CliError(
        `downloaded ${bytes.length} bytes have sha256 ${hex}; the API's ETag is ${etag}`,
        EXIT.network,
        "the transfer was corrupted; retry",
      );
    }
    decodeOrFail(bytes, `the adapter the API sent for ${target.model}/${target.user}`, {
      model: target.model,
    });
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, bytes);
    const v = response.headers.get("x-adapter-version") ?? version ?? "?";
    io.stdout(
      `pulled ${target.model}/${target.user}: version ${v}, etag ${hex}, ${bytes.length} bytes → ${out}\n`,
    );
    return EXIT.ok;
  },
};
