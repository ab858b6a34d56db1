import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { COMMANDS } from "../../../src/cli/commands/index.ts";
import { EXIT } from "../../../src/cli/errors.ts";
import { cli } from "./fixtures.ts";

const root = join(import.meta.dirname, "..", "..", "..");
const node = join(root, "node_modules", ".bin", "node");

describe("loraxs command line", () => {
  it("lists every command in --help and exits 0", async () => {
    const r = await cli(["--help"]);
    expect(r.code).toBe(EXIT.ok);
    for (const c of COMMANDS) expect(r.stdout).toContain(`  ${c.name}`);
  });

  it("exits 2 with the program help when no command is given", async () => {
    const r = await cli([]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stdout).toContain("usage: loraxs <command>");
  });

  it.each(COMMANDS.map((c) => c.name))(
    "%s --help prints usage, every option and exits 0",
    async (name) => {
      const r = await cli([name, "--help"]);
      expect(r.code).toBe(EXIT.ok);
      expect(r.stdout).toContain(`usage: loraxs ${name}`);
      const command = COMMANDS.find((c) => c.name === name);
      for (const option of Object.keys(command?.options ?? {}))
        expect(r.stdout).toContain(`--${option}`);
    },
  );

  it("rejects an unknown command with exit 2, naming it and the known ones", async () => {
    const r = await cli(["inpsect", "a.safetensors"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('unknown command "inpsect"');
    expect(r.stderr).toContain("inspect, export-peft");
  });

  it("rejects an unknown option with exit 2, naming it and the known options", async () => {
    const r = await cli(["inspect", "a.safetensors", "--manifets", "m.json"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain("unknown option --manifets");
    expect(r.stderr).toContain("--manifest");
    expect(r.stderr).toContain("loraxs inspect --help");
  });

  it("rejects a missing positional and a missing required option with exit 2", async () => {
    const a = await cli(["inspect"]);
    expect(a.code).toBe(EXIT.usage);
    expect(a.stderr).toContain("takes <adapter>; got none");
    const b = await cli(["export-peft", "--adapter", "a", "--out", "o"]);
    expect(b.code).toBe(EXIT.usage);
    expect(b.stderr).toContain("needs --model");
  });

  it("the real executable runs under Node with type stripping and returns the exit code", () => {
    const ok = spawnSync(node, [join(root, "src/cli/bin.ts"), "--help"], { encoding: "utf8" });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain("export-peft");
    const bad = spawnSync(
      node,
      [join(root, "src/cli/bin.ts"), "inspect", "/nonexistent/a.safetensors"],
      { encoding: "utf8" },
    );
    expect(bad.status).toBe(EXIT.invalid);
    expect(bad.stderr).toContain("cannot read adapter /nonexistent/a.safetensors: ENOENT");
  });
});
