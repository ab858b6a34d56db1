// Edge API throughput on local workerd: `wrangler dev` with real local KV, D1 and R2.
//   npm run bench:api [-- --duration 5 --rounds 3 --connections 10 --logs on|off]
// Seeds a model manifest and a 30 KB adapter through the API, then loads GET /v1/health,
// GET adapter (with and without If-None-Match) and PUT adapter with autocannon, prints a
// table and the ratio GET adapter / health (design target: at least 0.7).
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { startLocalEdge } from "../scripts/edge/wrangler.mjs";
import { encodeAdapter, sha256Digest } from "../src/format/index.ts";
import { syntheticManifest } from "../src/manifest/synthetic.ts";
import { mintToken } from "../src/shared/tokens.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "5" },
    connections: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    // "on": one JSON line per request from the worker plus wrangler's own request lines;
    // "off": only warnings (LOG_LEVEL=warn, wrangler --log-level warn).
    logs: { type: "string", default: "on" },
  },
});
/** Seconds per scenario: long enough for a stable mean, short enough for a 2-core CI box. */
const DURATION_S = Number(values.duration);
/** Interleaved rounds per scenario; the median round is reported. */
const ROUNDS = Number(values.rounds);
/** Concurrent connections: a busy edge colo slice, not a stress test. */
const CONNECTIONS = Number(values.connections);
/** Adapter shape giving ~30 KB in F16: 58 modules of rank 16 (58 · 16 · 16 · 2 bytes = 29.7 KB). */
const MODULES = 58;
const RANK = 16;
/** Users the PUT scenario rotates through (one user's writes would serialise on its version). */
const PUT_USERS = 32;

const SECRET = "bench-secret-not-for-production";
const AUDIENCE = "loraxs-edge";
const MODEL = "bench-model";
/** A second model whose adapter is a few hundred bytes: separates the KV read from the body size. */
const TINY = "bench-tiny";
let logLines = 0;
const errorLines = [];
const onLine = (line) => {
  logLines += 1;
  if (errorLines.length < 5 && /"level":"error"|✘/.test(line)) errorLines.push(line.slice(0, 400));
};

const started = Date.now();
const edge = await startLocalEdge({
  vars: {
    JWT_SECRET: SECRET,
    WRITE_RATE_LIMIT: "1000000000",
    ...(values.logs === "off" ? { LOG_LEVEL: "warn" } : {}),
  },
  args: values.logs === "off" ? ["--log-level", "warn"] : [],
  onLine,
});
const { url } = edge;

try {
  const readyMs = Date.now() - started;

  const mint = (sub, role = "user") =>
    mintToken({ sub, role, ttlSeconds: 3600, secret: SECRET, audience: AUDIENCE });
  const admin = await mint("bench-admin", "admin");

  // Seed: manifests whose factors digest the adapters name, then one user's adapters.
  const factors = await sha256Digest(new TextEncoder().encode("bench factors"));
  for (const [id, modules, rank] of [
    [MODEL, MODULES, RANK],
    [TINY, 2, 4],
  ]) {
    const published = await fetch(`${url}/v1/models/${id}/manifest`, {
      method: "PUT",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify(benchManifest(id, modules, rank, factors)),
    });
    if (published.status !== 201)
      throw new Error(`publish ${id}: ${published.status} ${await published.text()}`);
  }

  const user = "bench-user";
  const userToken = await mint(user);
  const seed = async (model, modules, rank) => {
    const R = new Float32Array(modules * rank * rank).map((_, i) => Math.sin(i) * 1e-3);
    const body = encodeAdapter({ model, factors, rank, modules, R });
    const at = `${url}/v1/models/${model}/users/${user}/adapter`;
    const res = await fetch(at, {
      method: "PUT",
      headers: { authorization: `Bearer ${userToken}`, "content-type": "application/octet-stream" },
      body,
    });
    if (res.status !== 201) throw new Error(`seed ${model}: ${res.status} ${await res.text()}`);
    return { at, body, etag: res.headers.get("etag") };
  };
  const { at: adapterUrl, body: bytes, etag } = await seed(MODEL, MODULES, RANK);
  const tiny = await seed(TINY, 2, 4);

  const putTokens = await Promise.all(
    Array.from({ length: PUT_USERS }, (_, i) => mint(`bench-writer-${i}`)),
  );
  let next = 0;

  const scenarios = [
    { name: "GET /v1/health", expect: 200, opts: { url: `${url}/v1/health` } },
    {
      name: `GET adapter (${(bytes.byteLength / 1024).toFixed(1)} KB)`,
      expect: 200,
      opts: { url: adapterUrl, headers: { authorization: `Bearer ${userToken}` } },
    },
    {
      name: `GET adapter (${tiny.body.byteLength} B)`,
      expect: 200,
      opts: { url: tiny.at, headers: { authorization: `Bearer ${userToken}` } },
    },
    {
      name: "GET adapter, If-None-Match (304)",
      expect: 304,
      opts: {
        url: adapterUrl,
        headers: { authorization: `Bearer ${userToken}`, "if-none-match": etag },
      },
    },
    {
      name: `PUT adapter (30 KB, ${PUT_USERS} users)`,
      expect: 201,
      opts: {
        url,
        requests: [
          {
            method: "PUT",
            setupRequest: (req) => {
              const i = next++ % PUT_USERS;
              return {
                ...req,
                path: `/v1/models/${MODEL}/users/bench-writer-${i}/adapter`,
                headers: {
                  authorization: `Bearer ${putTokens[i]}`,
                  "content-type": "application/octet-stream",
                },
                body: Buffer.from(bytes),
              };
            },
          },
        ],
      },
    },
  ];

  // Rounds interleave the scenarios, so load from other processes hits all of them alike;
  // a row reports the median round (by req/s) and the errors of all rounds.
  const runs = scenarios.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, s] of scenarios.entries()) {
      const result = await autocannon({
        connections: CONNECTIONS,
        duration: DURATION_S,
        ...s.opts,
      });
      const total = Object.values(result.statusCodeStats ?? {}).reduce((a, b) => a + b.count, 0);
      const expected = result.statusCodeStats?.[s.expect]?.count ?? 0;
      runs[i].push({
        rps: result.requests.average,
        p50: result.latency.p50,
        p99: result.latency.p99,
        requests: total,
        errors: result.errors + result.timeouts + (total - expected),
        detail: [
          ...Object.entries(result.statusCodeStats ?? {})
            .filter(([code]) => Number(code) !== s.expect)
            .map(([code, v]) => `${code}×${v.count}`),
          ...(result.timeouts ? [`timeouts×${result.timeouts}`] : []),
          ...(result.errors - result.timeouts > 0
            ? [`socket×${result.errors - result.timeouts}`]
            : []),
        ],
      });
    }
  }
  const rows = runs.map((list, i) => {
    const median = [...list].sort((a, b) => a.rps - b.rps)[Math.floor(list.length / 2)];
    return {
      ...median,
      scenario: scenarios[i].name,
      requests: list.reduce((a, r) => a + r.requests, 0),
      errors: list.reduce((a, r) => a + r.errors, 0),
      detail: list.flatMap((r) => r.detail).join(", "),
      all: list.map((r) => r.rps.toFixed(0)).join(" / "),
    };
  });

  const health = rows[0].rps;
  const pad = (v, n) => String(v).padEnd(n);
  console.log(
    `\nEdge API on local workerd (wrangler dev), ${CONNECTIONS} connections, ` +
      `${ROUNDS} interleaved rounds of ${DURATION_S} s per scenario (median round shown); ` +
      `${cpus().length} CPUs (${cpus()[0]?.model ?? "unknown"}), load average ${loadavg()[0].toFixed(1)}; ` +
      `logs ${values.logs}; local edge (migrations + wrangler dev) ready in ${readyMs} ms\n`,
  );
  console.log(
    `| ${pad("scenario", 40)} | req/s | p50 ms | p99 ms | requests | errors | req/s per round |`,
  );
  console.log(`|${"-".repeat(42)}|------:|-------:|-------:|---------:|-------:|---|`);
  for (const r of rows) {
    console.log(
      `| ${pad(r.scenario, 40)} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.requests} | ${r.errors} | ${r.all} |`,
    );
  }
  const ratio = rows[1].rps / health;
  const ratioTiny = rows[2].rps / health;
  const ratio304 = rows[3].rps / health;
  console.log(
    `\nGET adapter / health = ${ratio.toFixed(2)} (target >= 0.7); tiny adapter: ${ratioTiny.toFixed(2)}; ` +
      `with If-None-Match: ${ratio304.toFixed(2)}`,
  );
  for (const r of rows) if (r.detail) console.log(`${r.scenario}: unexpected ${r.detail}`);
  console.log(`worker log lines during the run: ${logLines}`);
  for (const line of errorLines) console.log(`worker error: ${line}`);
  process.exitCode = rows.some((r) => r.errors > 0) ? 1 : 0;
} finally {
  await edge.stop();
}

/** SmolLM2's shapes: q_proj and v_proj alternating over ceil(modules / 2) layers. */
function benchManifest(id, modules, rank, factors) {
  const hidden = 576;
  return syntheticManifest({
    id,
    modules: Array.from({ length: modules }, (_, i) => ({
      name: `model.layers.${i >> 1}.self_attn.${i % 2 ? "v_proj" : "q_proj"}`,
      in: hidden,
      out: i % 2 ? 192 : hidden,
    })),
    rank,
    factors: { sha256: factors, bytes: 4096 },
    config: {
      hidden_size: hidden,
      num_layers: Math.ceil(modules / 2),
      num_attention_heads: 9,
      num_kv_heads: 3,
      head_dim: 64,
      vocab_size: 49152,
      max_position_embeddings: 8192,
    },
    preset: "bench",
  });
}
