import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { parseDevVars } from "../../../src/cli/dev-vars.ts";
import { EXIT } from "../../../src/cli/errors.ts";
import { subjectOf } from "../../../src/cli/target.ts";
import { cli } from "./fixtures.ts";

const key = (s: string) => new TextEncoder().encode(s);

describe("loraxs token", () => {
  it("mints an HS256 token with sub, role, audience and the requested lifetime", async () => {
    const r = await cli([
      "token",
      "--sub",
      "alice",
      "--role",
      "worker",
      "--ttl",
      "120",
      "--secret",
      "s3cret",
    ]);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const { payload, protectedHeader } = await jwtVerify(r.stdout.trim(), key("s3cret"), {
      audience: "loraxs-edge",
    });
    expect(protectedHeader.alg).toBe("HS256");
    expect(payload.sub).toBe("alice");
    expect(payload.role).toBe("worker");
    expect((payload.exp as number) - (payload.iat as number)).toBe(120);
    expect(subjectOf(r.stdout.trim())).toBe("alice");
  });

  it("takes the secret from JWT_SECRET, then from ./.dev.vars", async () => {
    const fromEnv = await cli(["token", "--sub", "bob"], { JWT_SECRET: "from-env" });
    await expect(
      jwtVerify(fromEnv.stdout.trim(), key("from-env"), { audience: "loraxs-edge" }),
    ).resolves.toMatchObject({ payload: { sub: "bob", aud: "loraxs-edge" } });
    const dir = await mkdtemp(join(tmpdir(), "loraxs-devvars-"));
    await writeFile(join(dir, ".dev.vars"), '# local secrets\nOTHER=1\nJWT_SECRET="from-file"\n');
    const fromFile = await cli(["token", "--sub", "bob", "--audience", "elsewhere"], {}, dir);
    expect(fromFile.code, fromFile.stderr).toBe(EXIT.ok);
    await expect(
      jwtVerify(fromFile.stdout.trim(), key("from-file"), { audience: "elsewhere" }),
    ).resolves.toMatchObject({ payload: { sub: "bob", aud: "elsewhere" } });
    await expect(
      jwtVerify(fromFile.stdout.trim(), key("from-env"), { audience: "elsewhere" }),
    ).rejects.toThrow();
  });

  it("takes --aud, the spelling of the former npm run token, as --audience", async () => {
    const r = await cli(["token", "--sub", "carol", "--aud", "other", "--secret", "s"]);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    await expect(
      jwtVerify(r.stdout.trim(), key("s"), { audience: "other" }),
    ).resolves.toMatchObject({
      payload: { sub: "carol", aud: "other" },
    });
  });

  it("reads .dev.vars lines with export, single quotes and CRLF", () => {
    const text = "# c\r\nexport A='x y'\r\nJWT_SECRET=\"s\"\r\n  B = 2 \n";
    expect(parseDevVars(text)).toEqual({ A: "x y", JWT_SECRET: "s", B: "2" });
  });

  it("fails with exit 2 and says where a secret may come from when there is none", async () => {
    const dir = await mkdtemp(join(tmpdir(), "loraxs-nosecret-"));
    const r = await cli(["token", "--sub", "alice"], {}, dir);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain(
      "no secret: pass --secret, set JWT_SECRET, or put JWT_SECRET=... in ./.dev.vars",
    );
  });

  it("rejects a bad role, a bad ttl and a missing --sub with exit 2", async () => {
    const role = await cli(["token", "--sub", "a", "--role", "root", "--secret", "s"]);
    expect(role.code).toBe(EXIT.usage);
    expect(role.stderr).toContain('--role must be one of user, worker, admin; got "root"');
    const ttl = await cli(["token", "--sub", "a", "--ttl", "99999999", "--secret", "s"]);
    expect(ttl.code).toBe(EXIT.usage);
    expect(ttl.stderr).toContain('--ttl must be an integer from 1 to 2592000; got "99999999"');
    const sub = await cli(["token", "--secret", "s"]);
    expect(sub.code).toBe(EXIT.usage);
    expect(sub.stderr).toContain("needs --sub");
    expect(
      decodeJwt((await cli(["token", "--sub", "x", "--secret", "s"])).stdout.trim()).role,
    ).toBe("user");
  });
});
