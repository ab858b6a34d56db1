// No silent skips: a suite missing a tool is named with its install command, and CI=true turns
// a missing Chromium or Python into a failure.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { canRun, type Requirement } from "../../shared/requirements.ts";

const missing = (requiredInCi: boolean): Requirement => ({
  name: "a tool",
  present: () => false,
  install: "install-the-tool",
  requiredInCi,
});
const present: Requirement = { ...missing(true), present: () => true };

describe("canRun", () => {
  afterEach(() => vi.unstubAllEnvs());

  it("runs a suite whose requirements are present, even under CI", () => {
    vi.stubEnv("CI", "true");
    expect(canRun("suite", present)).toBe(true);
  });

  it("locally skips and names the suite and the install command", () => {
    const dir = mkdtempSync(join(tmpdir(), "loraxs-skip-test-"));
    try {
      vi.stubEnv("CI", "");
      vi.stubEnv("LORAXS_SKIP_LOG", join(dir, "log.txt"));
      const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
      expect(canRun("my suite", present, missing(true))).toBe(false);
      warn.mockRestore();
      const log = readFileSync(join(dir, "log.txt"), "utf8");
      expect(log).toContain('SKIPPED "my suite": missing a tool; install: install-the-tool');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("fails under CI=true when CI must have the tool", () => {
    vi.stubEnv("CI", "true");
    expect(() => canRun("my suite", missing(true))).toThrow(/CI=true.*my suite.*install-the-tool/);
  });

  it("still skips under CI=true a tool CI is not expected to have", () => {
    vi.stubEnv("CI", "true");
    vi.stubEnv("LORAXS_SKIP_LOG", "");
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    expect(canRun("big model suite", missing(false))).toBe(false);
    warn.mockRestore();
  });
});
