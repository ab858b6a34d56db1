import { createRoute, z } from "@hono/zod-openapi";
import { r2Manifest, r2ModelFile } from "../../shared/keys.ts";
import { MAX_MANIFEST_BYTES, MAX_MODEL_FILE_BYTES } from "../../shared/limits.ts";
import { noneMatch } from "../adapter-store.ts";
import { guard } from "../auth.ts";
import { checkDeclaredLength } from "../body.ts";
import { ApiError, badRequest, notFound, unprocessable } from "../errors.ts";
import { checkManifest, findManifest, forgetManifest, requireManifest } from "../manifests.ts";
import { jsonBody } from "../middleware.ts";
import { bearer, errors, router } from "../openapi.ts";
import { parseRange } from "../range.ts";
import { Binary, FileParams, ModelParams, ModelsAnswer } from "../schemas.ts";

const IMMUTABLE = "public, max-age=31536000, immutable";
const MANIFEST_CACHE = "public, max-age=60";
// The manifest's own zod schema (src/manifest) documents it; parseManifest validates uploads,
// so the route body is a reference rather than a second validator.
const Manifest = { $ref: "#/components/schemas/Manifest" };

const listModels = createRoute({
  method: "get",
  path: "/v1/models",
  tags: ["models"],
  summary: "Published model manifests",
  responses: {
    200: { description: "Manifests", content: { "application/json": { schema: ModelsAnswer } } },
  },
});

const getModel = createRoute({
  method: "get",
  path: "/v1/models/{model}",
  tags: ["models"],
  summary: "One model's manifest",
  request: { params: ModelParams },
  responses: {
    200: { description: "The manifest", content: { "application/json": { schema: Manifest } } },
    304: { description: "Matches If-None-Match" },
    ...errors(400, 404),
  },
});

const getFile = createRoute({
  method: "get",
  path: "/v1/models/{model}/files/{name}",
  tags: ["models"],
  summary: "A model file (immutable; Range requests)",
  request: { params: FileParams },
  responses: {
    200: { description: "The file", content: { "application/octet-stream": { schema: Binary } } },
    206: {
      description: "The requested range",
      content: { "application/octet-stream": { schema: Binary } },
    },
    304: { description: "Matches If-None-Match" },
    ...errors(400, 404, 416),
  },
});

const putManifest = createRoute({
  method: "put",
  path: "/v1/models/{model}/manifest",
  tags: ["models"],
  summary: "Publish a manifest (admin)",
  security: bearer,
  middleware: [guard(["admin"]), jsonBody(MAX_MANIFEST_BYTES, "manifest")] as const,
  request: {
    params: ModelParams,
    body: { content: { "application/json": { schema: Manifest } }, required: true },
  },
  responses: {
    201: { description: "Published", content: { "application/json": { schema: Manifest } } },
    ...errors(400, 401, 403, 413, 415, 422),
  },
});

const putFile = createRoute({
  method: "put",
  path: "/v1/models/{model}/files/{name}",
  tags: ["models"],
  summary: "Upload a model file, streamed to R2 (admin); checked against the manifest's sha256",
  security: bearer,
  middleware: [guard(["admin"])] as const,
  request: {
    params: FileParams,
    body: { content: { "application/octet-stream": { schema: Binary } }, required: true },
  },
  responses: {
    201: {
      description: "Stored",
      content: {
        "application/json": {
          schema: z.object({ name: z.string(), bytes: z.number(), etag: z.string() }),
        },
      },
    },
    ...errors(400, 401, 403, 411, 413, 422),
  },
});

export const modelRoutes = router()
  .openapi(listModels, async (c) => {
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await c.env.BUCKET.list({ prefix: "models/", delimiter: "/", cursor });
      for (const p of page.delimitedPrefixes) ids.push(p.slice("models/".length, -1));
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
    const found = await Promise.all(ids.map((id) => findManifest(c.env, id)));
    const models = found.flatMap((m) =>
      m ? [m.manifest as unknown as Record<string, unknown>] : [],
    );
    return c.json({ models }, 200, { "cache-control": MANIFEST_CACHE });
  })
  .openapi(getModel, async (c) => {
    const { model } = c.req.valid("param");
    const loaded = await requireManifest(c.env, model);
    const headers = { etag: loaded.etag, "cache-control": MANIFEST_CACHE };
    if (matches(c.req.header("if-none-match"), loaded.etag)) {
      return new Response(null, { status: 304, headers }) as never;
    }
    return new Response(loaded.text, {
      headers: { ...headers, "content-type": "application/json; charset=utf-8" },
    }) as never;
  })
  .openapi(getFile, async (c) => {
    const { model, name } = c.req.valid("param");
    const key = r2ModelFile(model, name);
    const head = await c.env.BUCKET.head(key);
    if (!head)
      throw notFound(
        "model.file_not_found",
        `model ${JSON.stringify(model)} has no file ${JSON.stringify(name)}`,
      );
    const headers: Record<string, string> = {
      etag: head.httpEtag,
      "cache-control": IMMUTABLE,
      "accept-ranges": "bytes",
      "content-type": head.httpMetadata?.contentType ?? "application/octet-stream",
    };
    if (matches(c.req.header("if-none-match"), head.httpEtag)) {
      return new Response(null, { status: 304, headers }) as never;
    }
    const range = parseRange(c.req.header("range"), head.size);
    if (range === "unsatisfiable") {
      throw new ApiError(
        416,
        "range.not_satisfiable",
        `Range ${JSON.stringify(c.req.header("range"))} is outside the file's ${head.size} bytes`,
        { "content-range": `bytes */${head.size}` },
      );
    }
    const object = await c.env.BUCKET.get(
      key,
      range ? { range: { offset: range.start, length: range.end - range.start + 1 } } : {},
    );
    if (!object)
      throw notFound(
        "model.file_not_found",
        `model ${JSON.stringify(model)} has no file ${JSON.stringify(name)}`,
      );
    if (!range) {
      return new Response(object.body, {
        headers: { ...headers, "content-length": String(head.size) },
      }) as never;
    }
    return new Response(object.body, {
      status: 206,
      headers: {
        ...headers,
        "content-range": `bytes ${range.start}-${range.end}/${head.size}`,
        "content-length": String(range.end - range.start + 1),
      },
    }) as never;
  })
  .openapi(putManifest, async (c) => {
    const { model } = c.req.valid("param");
    // Stored as sent (the jsonBody middleware checked it parses), served back byte for byte.
    const text = await c.req.text();
    const manifest = checkManifest(model, JSON.parse(text));
    await c.env.BUCKET.put(r2Manifest(model), text, {
      httpMetadata: { contentType: "application/json; charset=utf-8" },
    });
    forgetManifest(model);
    return c.json(manifest, 201) as never;
  })
  .openapi(putFile, async (c) => {
    const { model, name } = c.req.valid("param");
    if (name === "manifest.json") {
      throw badRequest(
        "model.use_manifest_route",
        "publish manifest.json through PUT /v1/models/{model}/manifest",
      );
    }
    const length = checkDeclaredLength(c.req.raw, MAX_MODEL_FILE_BYTES, name);
    if (length === null || !c.req.raw.body) {
      throw new ApiError(
        411,
        "request.length_required",
        `PUT of ${JSON.stringify(name)} needs a Content-Length header`,
      );
    }
    const listed = (await findManifest(c.env, model))?.manifest.files?.find((f) => f.name === name);
    const sha256 = listed?.sha256?.replace(/^sha256:/, "");
    const body = c.req.raw.body.pipeThrough(new FixedLengthStream(length));
    let stored: R2Object | null;
    try {
      stored = await c.env.BUCKET.put(r2ModelFile(model, name), body, {
        httpMetadata: { contentType: "application/octet-stream" },
        ...(sha256 ? { sha256 } : {}),
      });
    } catch (err) {
      if (sha256 && /sha-?256|checksum|digest|BadDigest/i.test(String(err))) {
        throw unprocessable(
          "model.file_digest_mismatch",
          `${name} does not match the manifest's sha256:${sha256}`,
        );
      }
      throw err;
    }
    if (!stored) throw new ApiError(500, "storage.put_failed", `R2 did not store ${name}`);
    return c.json({ name, bytes: stored.size, etag: stored.httpEtag }, 201);
  });

const matches = (header: string | undefined, quotedEtag: string) =>
  noneMatch(header, quotedEtag.replace(/^"(.*)"$/, "$1"));
