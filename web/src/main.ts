// The demo page: pick a user, load the model on this device, compare the base model with the
// user's personal model, upload an adapter, train a new one.
import type { AdapterClient, FetchedAdapter, PersonalModel } from "../../src/client/index.ts";
import { compareSideBySide } from "./compare.ts";
import { type DemoUser, loadDemoConfig, userFromToken } from "./config.ts";
import { chooseDevice } from "./device.ts";
import { byId, describe, formatBytes, showVerdict } from "./dom.ts";
import { type AdapterVersion, createJob, getJob, listVersions } from "./edge-api.ts";
import { loadWithProgress } from "./loader.ts";

/** How often a training job's status is asked for while it runs. */
const JOB_POLL_MS = 2000;

const state: {
  modelId: string;
  model: PersonalModel | null;
  user: DemoUser | null;
  client: AdapterClient | null;
  adapter: FetchedAdapter | null;
  users: DemoUser[];
} = { modelId: "", model: null, user: null, client: null, adapter: null, users: [] };

/** Exposed for the end-to-end test: what the page has done so far. */
const status = {
  ready: false,
  device: "",
  user: "",
  /** The adapter version in use (0: none, the base model). */
  version: 0,
  generations: 0,
  /** The last comparison: each side's text and token count. */
  last: [] as { label: string; text: string; tokens: number }[],
  error: "",
};
(globalThis as unknown as { demo: typeof status }).demo = status;

const modelUrl = () => `${location.origin}/v1/models/${encodeURIComponent(state.modelId)}`;

async function main(): Promise<void> {
  const config = await loadDemoConfig();
  if (config) {
    state.modelId = config.model;
    state.users = config.users;
  } else {
    const { models } = (await (await fetch("/v1/models")).json()) as { models: { id: string }[] };
    const wanted = new URLSearchParams(location.search).get("model");
    state.modelId = wanted ?? models[0]?.id ?? "";
    byId("token-form").hidden = false;
    byId("user-label").textContent = "User";
  }
  setUpUsers();
  setUpChat();
  setUpUpload();
  setUpTraining();
  byId<HTMLSelectElement>("device").addEventListener("change", () => void startModel());
  if (state.users[0]) await selectUser(state.users[0]);
  await startModel();
}

function setUpUsers(): void {
  const select = byId<HTMLSelectElement>("user-select");
  const fill = () => {
    select.replaceChildren(
      ...state.users.map(
        (u) => new Option(`${u.id}${u.source === "random" ? " (random adapter)" : ""}`, u.id),
      ),
    );
    if (state.user) select.value = state.user.id;
  };
  fill();
  select.addEventListener("change", () => {
    const user = state.users.find((u) => u.id === select.value);
    if (user) void selectUser(user);
  });
  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      const user = userFromToken(byId<HTMLInputElement>("token-input").value.trim());
      state.users = [...state.users.filter((u) => u.id !== user.id), user];
      fill();
      void selectUser(user);
    } catch (error) {
      showAdapterCard([["Token", describe(error)]]);
    }
  });
}

async function startModel(): Promise<void> {
  const requested = byId<HTMLSelectElement>("device").value as "auto" | "webgpu" | "wasm";
  const badge = byId("backend");
  const note = byId("backend-note");
  const box = byId("load");
  byId<HTMLButtonElement>("generate").disabled = true;
  byId("chat-hint").textContent = "The model is still loading on this device…";
  status.ready = false;
  const previous = state.model;
  state.model = null;
  await previous?.dispose();
  try {
    const choice = await chooseDevice(requested);
    badge.textContent = choice.device === "webgpu" ? "WebGPU" : "WASM";
    badge.dataset.device = choice.device;
    note.hidden = false;
    note.textContent = choice.note;
    note.className = choice.warn ? "note" : "muted";
    status.device = choice.device;
    const model = await loadWithProgress(modelUrl(), choice.device, {
      progress: byId<HTMLProgressElement>("load-progress"),
      status: byId("load-status"),
      box,
    });
    badge.title = model.backend.reason;
    state.model = model;
    if (state.user) await useAdapter();
    byId<HTMLButtonElement>("generate").disabled = false;
    byId("chat-hint").textContent =
      `Both columns run on this device (${choice.device === "webgpu" ? "WebGPU" : "WASM"}) with one session: the base model uses R = 0, the personal model the user's R. Greedy decoding, so any difference comes from the adapter.`;
    status.ready = true;
  } catch (error) {
    box.dataset.state = "error";
    byId("load-status").textContent = `the model could not be loaded: ${describe(error)}`;
    byId("chat-hint").textContent =
      "No model: generation is unavailable until it loads (see above).";
    status.error = describe(error);
  }
}

async function selectUser(user: DemoUser): Promise<void> {
  state.user = user;
  state.adapter = null;
  status.user = user.id;
  byId("personal-title").textContent = `${user.id}'s model`;
  showAdapterCard([["Adapter", "loading…"]]);
  if (state.model) await useAdapter();
  else await refreshCard();
}

/** Fetches the user's adapter (ETag revalidation, cached) and swaps it into the model's R. */
async function useAdapter(): Promise<void> {
  const { model, user } = state;
  if (!model || !user) return;
  state.client = model.adapterClient({ api: location.origin, token: user.token });
  try {
    state.adapter = await model.useUser(state.client, user.id);
  } catch (error) {
    state.adapter = null;
    showAdapterCard([["Adapter", `refused: ${describe(error)}`]]);
    return;
  }
  await refreshCard();
}

async function refreshCard(): Promise<void> {
  const user = state.user;
  if (!user) return;
  let versions: AdapterVersion[];
  try {
    versions = await listVersions(state.modelId, user.id, user.token);
  } catch (error) {
    showAdapterCard([["Adapter", describe(error)]]);
    return;
  }
  const current = versions[0];
  status.version = current?.version ?? 0;
  if (!current) {
    showAdapterCard([
      ["Adapter", `${user.id} has no adapter yet: the personal model is the base model`],
    ]);
    return;
  }
  const meta = state.adapter?.adapter.metadata ?? {};
  const rows: [string, string][] = [
    [
      "User",
      `${user.id}${user.source === "random" && versions.length === 1 ? " — random (untrained) demo adapter" : ""}`,
    ],
    ["Version", `${current.version} of ${versions.length} (source: ${current.source})`],
    ["Size", `${formatBytes(current.bytes)} (${current.bytes} bytes)`],
    ["Created", current.created],
    ["ETag", current.etag],
  ];
  if (state.adapter) {
    const a = state.adapter.adapter;
    rows.push([
      "Tensor",
      `R [${a.modules}, ${a.rank}, ${a.rank}] ${a.dtype}, fetched: ${state.adapter.source}`,
    ]);
  }
  const made = [
    meta.source && `source ${meta.source}`,
    meta.steps && `${meta.steps} steps`,
    meta.created,
  ]
    .filter(Boolean)
    .join(", ");
  if (made) rows.push(["Made", made]);
  if (meta.note) rows.push(["Note", meta.note]);
  showAdapterCard(rows);
}

function showAdapterCard(rows: [string, string][]): void {
  byId("adapter-card").replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}

function setUpChat(): void {
  const button = byId<HTMLButtonElement>("generate");
  byId("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void generate(button);
  });
}

async function generate(button: HTMLButtonElement): Promise<void> {
  const model = state.model;
  if (!model) return;
  button.disabled = true;
  const text = byId<HTMLInputElement>("prompt").value;
  const maxTokens = Number(byId<HTMLInputElement>("max-tokens").value) || 40;
  const prompt = model.manifest.tokenizer?.chat_template
    ? [{ role: "user" as const, content: text }]
    : text;
  const outs = [
    { out: byId("base-out"), rate: byId("base-rate") },
    { out: byId("personal-out"), rate: byId("personal-rate") },
  ];
  status.last = [];
  for (const { out, rate } of outs) {
    out.textContent = "";
    out.dataset.state = "running";
    rate.textContent = "";
  }
  const side = (i: number, label: string, adapter: FetchedAdapter["adapter"] | null) => {
    const view = outs[i] as (typeof outs)[number];
    return {
      label,
      adapter,
      onText: (t: string) => {
        view.out.textContent += t;
      },
      onDone: ({ tokens, ms }: { tokens: number; ms: number }) => {
        view.out.dataset.state = "done";
        status.last[i] = { label, text: view.out.textContent ?? "", tokens };
        view.rate.textContent = `${tokens} tokens, ${((tokens * 1000) / Math.max(ms, 1)).toFixed(1)} tokens/s`;
      },
    };
  };
  try {
    await compareSideBySide(
      model,
      prompt,
      [
        side(0, "zeros", null),
        side(1, state.user?.id ?? "adapter", state.adapter?.adapter ?? null),
      ],
      { maxTokens },
    );
    status.generations += 1;
  } catch (error) {
    for (const { out } of outs) {
      out.dataset.state = "error";
      out.textContent += `\n[generation failed: ${describe(error)}]`;
    }
  } finally {
    button.disabled = false;
  }
}

function setUpUpload(): void {
  const verdict = byId("upload-verdict");
  byId("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = byId<HTMLInputElement>("upload-file").files?.[0];
    const { user, model } = state;
    if (!file || !user) {
      showVerdict(
        verdict,
        false,
        file ? "choose a user first" : "choose a .safetensors file first",
      );
      return;
    }
    showVerdict(
      verdict,
      "pending",
      `uploading ${file.name} (${formatBytes(file.size)}) as ${user.id}…`,
    );
    try {
      const client = model?.adapterClient({ api: location.origin, token: user.token });
      const bytes = new Uint8Array(await file.arrayBuffer());
      const result = client
        ? await client.uploadAdapter(user.id, bytes)
        : await rawUpload(user, bytes);
      showVerdict(
        verdict,
        true,
        `accepted: version ${result.version}, ${result.bytes} bytes, etag ${result.etag}`,
      );
      if (state.model) await useAdapter();
      else await refreshCard();
    } catch (error) {
      showVerdict(verdict, false, `refused by the server: ${describe(error)}`);
    }
  });
}

/** Upload before the model is loaded (no client yet): same route, same verdicts. */
async function rawUpload(user: DemoUser, bytes: Uint8Array) {
  const response = await fetch(
    `/v1/models/${encodeURIComponent(state.modelId)}/users/${encodeURIComponent(user.id)}/adapter`,
    {
      method: "PUT",
      headers: {
        authorization: `Bearer ${user.token}`,
        "content-type": "application/octet-stream",
      },
      body: bytes as BodyInit,
    },
  );
  const body = (await response.json()) as {
    version: number;
    bytes: number;
    etag: string;
    error?: { code: string; message: string };
  };
  if (!response.ok) {
    throw Object.assign(new Error(body.error?.message ?? response.statusText), {
      status: response.status,
      code: body.error?.code ?? `http_${response.status}`,
    });
  }
  return body;
}

function setUpTraining(): void {
  const verdict = byId("train-status");
  byId("train-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = state.user;
    const text = byId<HTMLTextAreaElement>("train-text").value.trim();
    const steps = Number(byId<HTMLInputElement>("train-steps").value) || undefined;
    if (!user || !text) {
      showVerdict(
        verdict,
        false,
        user ? "paste some text to train on first" : "choose a user first",
      );
      return;
    }
    try {
      const paragraphs = text
        .split(/\n\s*\n/)
        .map((p) => p.trim())
        .filter(Boolean);
      const job = await createJob(state.modelId, user.id, user.token, paragraphs, { steps });
      showVerdict(
        verdict,
        "pending",
        `job ${job.id}: ${job.status} — start a worker: npm run worker -- --api ${location.origin} --token <worker token>`,
      );
      await followJob(job.id, user, verdict);
    } catch (error) {
      showVerdict(verdict, false, `job refused: ${describe(error)}`);
    }
  });
}

async function followJob(id: string, user: DemoUser, verdict: HTMLElement): Promise<void> {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
    const job = await getJob(id, user.token);
    if (job.status === "succeeded") {
      showVerdict(
        verdict,
        true,
        `job ${id} succeeded: adapter version ${job.version} — now generating with it above`,
      );
      if (state.user?.id === user.id) await useAdapter();
      return;
    }
    if (job.status === "failed") {
      showVerdict(
        verdict,
        false,
        `job ${id} failed after ${job.attempts} attempt(s): ${job.error ?? "no reason given"}`,
      );
      return;
    }
    showVerdict(
      verdict,
      "pending",
      `job ${id}: ${job.status} (attempt ${job.attempts}, updated ${job.updated})${job.status === "queued" ? " — waiting for a worker (npm run worker)" : ""}`,
    );
  }
}

main().catch((error) => {
  status.error = describe(error);
  byId("load-status").textContent = `the page could not start: ${describe(error)}`;
});
