// Builders the worker tests share: tokens, requests through the worker, manifests and adapters
// made in plain sight with the project's own encoder, and the setup most tests start from (a
// published model, a user with stored adapter versions, a job).
import { env, SELF } from "cloudflare:test";
import { beforeAll, expect } from "vitest";
import { encodeAdapter } from "../../src/format/index.ts";
import { syntheticManifest } from "../../src/manifest/synthetic.ts";
import { mintToken, type Role } from "../../src/shared/tokens.ts";

export const BASE = "http://edge.test";

/** A fresh id so tests never share a user or a model, whatever the storage isolation. */
export const uid = (prefix: string) => `${prefix}-${crypto.randomUUID().slice(0, 8)}`;

export function token(sub: string, role: Role = "user", ttlSeconds = 600) {
  return mintToken({ sub, role, ttlSeconds, secret: env.JWT_SECRET, audience: env.JWT_AUDIENCE });
}

type CallInit = {
  token?: string;
  body?: BodyInit | null;
  json?: unknown;
  headers?: Record<string, string>;
};

/** One request through the worker's fetch handler. */
export function call(method: string, path: string, init: CallInit = {}) {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  let body = init.body ?? null;
  if (init.json !== undefined) {
    headers["content-type"] ??= "application/json";
    body = JSON.stringify(init.json);
  }
  return SELF.fetch(`${BASE}${path}`, { method, headers, body });
}

/**
 * A body sent as it is under the given content type: malformed or oversized JSON, or a body under
 * the wrong type, which `call`'s `json` option would never send.
 */
export function callWithRawBody(
  method: string,
  path: string,
  bearer: string,
  body: string,
  contentType = "application/json",
) {
  return call(method, path, { token: bearer, body, headers: { "content-type": contentType } });
}

/**
 * `header.payload` (base64url, padding dropped) signed HS256 with the test secret: tokens no JWT
 * library would build.
 */
export async function signHs256(header: string, payload: string) {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(env.JWT_SECRET),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const input = `${header}.${payload.replace(/=+$/, "")}`;
  const sig = new Uint8Array(
    await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input)),
  );
  const s = btoa(String.fromCharCode(...sig))
    .replace(/=+$/, "")
    .replace(/\+/g, "-")
    .replace(/\//g, "_");
  return `${input}.${s}`;
}

export async function errorOf(res: Response) {
  const body = (await res.json()) as { error: { code: string; message: string } };
  return body.error;
}

export const FACTORS = `sha256:${"ab".repeat(32)}`;
export const OTHER_FACTORS = `sha256:${"cd".repeat(32)}`;
export const RANK = 4;
export const MODULES = 3;
export const HIDDEN = 32;

/** A manifest as docs/contracts.md describes it: 3 modules of rank 4, with its graph's files. */
function tinyManifest(id: string, family: "decoder" | "encoder", factors: string) {
  return syntheticManifest({
    id,
    family,
    modules: Array.from({ length: MODULES }, (_, i) => ({
      name: `model.layers.${i}.self_attn.q_proj`,
      in: HIDDEN,
      out: HIDDEN,
    })),
    rank: RANK,
    factors: { sha256: factors, bytes: 2048 },
    config: {
      hidden_size: HIDDEN,
      num_layers: MODULES,
      num_attention_heads: 4,
      num_kv_heads: 2,
      head_dim: 8,
      vocab_size: 128,
      max_position_embeddings: 256,
    },
    preset: family === "decoder" ? "tiny-llama" : "tiny-bert",
    onnx: {
      file: "model.onnx",
      data_file: "model.onnx.data",
      opset: 18,
      weights_dtype: "F32",
      quantization: "none",
    },
    files: [
      { name: "model.onnx", role: "onnx", sha256: `sha256:${"0".repeat(64)}`, bytes: 4096 },
      {
        name: "model.onnx.data",
        role: "onnx-data",
        sha256: `sha256:${"1".repeat(64)}`,
        bytes: 8192,
      },
    ],
  });
}

export const decoderManifest = (id: string, factors = FACTORS) =>
  tinyManifest(id, "decoder", factors);

/** An encoder manifest (jobs with labelled examples). */
export const encoderManifest = (id: string) => tinyManifest(id, "encoder", FACTORS);

/** A valid adapter for the test manifest; `fill` sets every R value. */
export function adapter(
  model: string,
  opts: { fill?: number; factors?: string; rank?: number; modules?: number; note?: string } = {},
) {
  const rank = opts.rank ?? RANK;
  const modules = opts.modules ?? MODULES;
  const R = new Float32Array(modules * rank * rank).fill(opts.fill ?? 0.001);
  // A copy typed over a plain ArrayBuffer, as fetch bodies want.
  return new Uint8Array(
    encodeAdapter({
      model,
      factors: opts.factors ?? FACTORS,
      rank,
      modules,
      R,
      ...(opts.note ? { metadata: { note: opts.note } } : {}),
    }),
  );
}

/** Publishes a model manifest through the API as an admin. */
export async function publish(manifest: { id: string }) {
  const res = await call("PUT", `/v1/models/${manifest.id}/manifest`, {
    token: await token("ops", "admin"),
    json: manifest,
  });
  if (res.status !== 201)
    throw new Error(`publish ${manifest.id}: ${res.status} ${await res.text()}`);
}

/** A fresh model id, its manifest (decoder unless told) published. */
export async function publishModel(prefix: string, family: "decoder" | "encoder" = "decoder") {
  const id = uid(prefix);
  await publish(tinyManifest(id, family, FACTORS));
  return id;
}

/**
 * A fresh decoder model id for the tests of one file (or describe block), published by a
 * `beforeAll` this registers: the id is there at once for module-level tables and closures, the
 * manifest before the first test runs.
 */
export function decoderModelForTests(prefix: string) {
  const id = uid(prefix);
  beforeAll(() => publish(decoderManifest(id)));
  return id;
}

export const adapterPath = (model: string, user: string) =>
  `/v1/models/${model}/users/${user}/adapter`;

export const jobsPath = (model: string, user: string) => `/v1/models/${model}/users/${user}/jobs`;

/** Asks for a training job on `user`'s data with the user's own token, as a client would. */
export async function createJob(model: string, user: string, body: unknown) {
  return call("POST", jobsPath(model, user), { token: await token(user), json: body });
}

export async function putAdapter(
  model: string,
  user: string,
  bytes: Uint8Array<ArrayBuffer>,
  headers: Record<string, string> = {},
  as?: string,
) {
  return call("PUT", adapterPath(model, user), {
    token: as ?? (await token(user)),
    body: bytes,
    headers: { "content-type": "application/octet-stream", ...headers },
  });
}

export async function sha256(bytes: Uint8Array) {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Stores `bytes` as `user`'s next adapter version with the user's own token and checks that it
 * landed, so a test's setup never goes on from a write that failed.
 */
export async function storeAdapter(model: string, user: string, bytes: Uint8Array<ArrayBuffer>) {
  const res = await putAdapter(model, user, bytes);
  expect(res.status, `storing an adapter for ${user}`).toBe(201);
}

/**
 * A fresh user with one stored version per fill, in order (version 1 holds `fills[0]`), and the
 * user's token: the start of the version and DELETE tests.
 */
export async function userWithVersions(model: string, ...fills: number[]) {
  const user = uid("u");
  for (const fill of fills) await storeAdapter(model, user, adapter(model, { fill }));
  return { user, auth: await token(user) };
}

/**
 * For the tests of one file: a fresh decoder model and a fresh user whose adapter versions (one
 * per fill, in order) are stored by `beforeAll`s this registers; both ids at once, for
 * module-level tables and closures.
 */
export function userWithVersionsForTests(prefix: string, ...fills: number[]) {
  const model = decoderModelForTests(prefix);
  const user = uid("u");
  beforeAll(async () => {
    for (const fill of fills) await storeAdapter(model, user, adapter(model, { fill }));
  });
  return { model, user };
}

/** A freshly published decoder model and a fresh user whose first adapter (version 1) is stored. */
export async function publishModelWithAdapter(prefix: string) {
  const model = await publishModel(prefix);
  const user = uid("u");
  await storeAdapter(model, user, adapter(model));
  return { model, user, path: adapterPath(model, user) };
}
