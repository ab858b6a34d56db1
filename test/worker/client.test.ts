// The typed client (hono/client over AppType) against the worker: routes, params and JSON
// answers are checked by the compiler and here at run time.
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { apiClient } from "../../src/api/client.ts";
import { adapter, BASE, decoderManifest, publish, putAdapter, token, uid } from "./helpers.ts";

const viaWorker: typeof fetch = (input, init) => SELF.fetch(input as RequestInfo, init);

describe("typed client", () => {
  it("reads health, versions and jobs with typed answers", async () => {
    const model = uid("typed");
    await publish(decoderManifest(model));
    const user = uid("u");
    await putAdapter(model, user, adapter(model));

    const anonymous = apiClient(BASE, undefined, viaWorker);
    const health = await anonymous.v1.health.$get();
    expect(await health.json()).toEqual({ ok: true });

    const api = apiClient(BASE, await token(user), viaWorker);
    const res = await api.v1.models[":model"].users[":user"].adapter.versions.$get({
      param: { model, user },
      query: {},
    });
    expect(res.status).toBe(200);
    if (res.status === 200) {
      const { versions } = await res.json();
      expect(versions[0]?.version).toBe(1);
    }

    const created = await api.v1.models[":model"].users[":user"].jobs.$post({
      param: { model, user },
      json: { data: { kind: "text", texts: ["typed"] }, options: { steps: 3 } },
    });
    expect(created.status).toBe(201);
    if (created.status === 201) {
      const { job } = await created.json();
      expect(job.status).toBe("queued");
      const worker = apiClient(BASE, await token("gpu", "worker"), viaWorker);
      const claimed = await worker.v1.jobs.claim.$post({
        json: { models: [model], max: 1, lease_seconds: 60 },
      });
      if (claimed.status === 200) expect((await claimed.json()).jobs[0]?.job.id).toBe(job.id);
      else expect.unreachable(`claim answered ${claimed.status}`);
    }
  });
});
