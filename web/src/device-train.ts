import { OnDeviceTrainer, type PersonalModel, type TrainEvent } from "../../src/client/index.ts";
import { refreshCard, useAdapter } from "./adapter-card.ts";
import { byId, describe, formatBytes, onSubmit, showVerdict } from "./dom.ts";
import { modelUrl, state, status } from "./state.ts";

/** Defaults for a pasted paragraph or two: enough steps to see the loss fall, seconds on WASM. */
const DEFAULT_STEPS = 30;
const DEFAULT_LR = 5e-3;
/** Loss points the chart keeps (one per optimizer step). */
const CHART_WIDTH = 320;
const CHART_HEIGHT = 80;

/** The step session of the loaded model (one per model; released when the model is replaced). */
let trainer: { model: PersonalModel; trainer: OnDeviceTrainer } | null = null;
let running: AbortController | null = null;

/** The "Train on this device" panel: wires the form once; `showDeviceTraining` follows the model. */
export function setUpDeviceTraining(): void {
  byId<HTMLInputElement>("device-train-steps").value = String(DEFAULT_STEPS);
  byId<HTMLInputElement>("device-train-lr").value = String(DEFAULT_LR);
  onSubmit("device-train-form", () => train());
  byId("device-train-cancel").addEventListener("click", () =>
    running?.abort(new Error("cancelled on this page")),
  );
}

/** Shows the panel when the loaded model's manifest has a training step, else how to get one. */
export async function showDeviceTraining(): Promise<void> {
  const model = state.model;
  if (trainer !== null && trainer.model !== model) {
    running?.abort(new Error("the model was reloaded"));
    const stale = trainer.trainer;
    trainer = null;
    await stale.dispose();
  }
  const train = model?.manifest.onnx_train;
  byId("device-train-form").hidden = train === undefined;
  byId("device-train-note").hidden = train !== undefined || model === null;
  if (train !== undefined) {
    byId("device-train-shape").textContent =
      `${train.shapes.batch} × ${train.shapes.seq} tokens per step`;
  }
}

async function train(): Promise<void> {
  const { model, user } = state;
  const verdict = byId("device-train-status");
  const text = byId<HTMLTextAreaElement>("device-train-text").value.trim();
  if (!model || !user || !text) {
    showVerdict(
      verdict,
      false,
      !model
        ? "the model is still loading"
        : !user
          ? "choose a user first"
          : "paste some text first",
    );
    return;
  }
  const steps = Number(byId<HTMLInputElement>("device-train-steps").value);
  const lr = Number(byId<HTMLInputElement>("device-train-lr").value);
  running = new AbortController();
  const signal = running.signal;
  setRunning(true);
  const losses: number[] = [];
  status.training = { state: "running", losses, version: 0, error: "" };
  try {
    if (trainer?.model !== model) {
      showVerdict(verdict, "pending", "fetching the training step (once; cached afterwards)…");
      trainer = {
        model,
        trainer: await OnDeviceTrainer.create(model, modelUrl(), { signal }),
      };
    }
    const client = state.client ?? model.adapterClient({ api: location.origin, token: user.token });
    const ifMatch = state.adapter?.etag;
    showVerdict(verdict, "pending", "training on this device…");
    const started = performance.now();
    const result = await trainer.trainer.personalize(paragraphs(text), {
      steps,
      lr,
      heldOut: 0,
      signal,
      onProgress: (e) => onStep(e, losses, started),
      upload: { client, user: user.id, ifMatch },
    });
    const uploaded = result.uploaded;
    status.training.version = Number(uploaded?.version ?? 0);
    await useAdapter();
    status.training.state = "done";
    showVerdict(
      verdict,
      true,
      `trained ${result.steps} steps on ${result.trainTokens} tokens in ${(result.ms / 1000).toFixed(1)} s; loss ${fmt(losses[0])} → ${fmt(losses.at(-1))}. Uploaded ${formatBytes(result.bytes.byteLength)} as version ${uploaded?.version} (If-Match ${ifMatch ?? "none: first adapter"}); it is now ${user.id}'s personal model above — only the adapter left this device, not the text.`,
    );
  } catch (error) {
    const cancelled = signal.aborted;
    status.training.state = cancelled ? "cancelled" : "error";
    status.training.error = describe(error);
    showVerdict(
      verdict,
      false,
      cancelled
        ? `cancelled after ${losses.length} steps: nothing was uploaded, ${user.id} keeps the previous adapter`
        : `training failed: ${describe(error)} — ${user.id} keeps the previous adapter`,
    );
    await refreshCard();
  } finally {
    running = null;
    setRunning(false);
  }
}

/** Paragraphs (blank-line separated) of the pasted text: each is one document to the packer. */
function paragraphs(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter(Boolean);
}

function onStep(e: TrainEvent, losses: number[], started: number): void {
  if (e.kind !== "step") return;
  losses.push(e.loss);
  const elapsed = performance.now() - started;
  const left = (elapsed / e.step) * (e.steps - e.step);
  const tokensPerS = e.ms > 0 ? (e.tokens / e.ms) * 1000 : 0;
  byId("device-train-progress").textContent =
    `step ${e.step} of ${e.steps} — loss ${fmt(e.loss)} — ${tokensPerS.toFixed(0)} tokens/s — about ${(left / 1000).toFixed(0)} s left`;
  drawLosses(losses);
}

/** The loss so far as a polyline, scaled to its own min and max. */
function drawLosses(losses: number[]): void {
  const line = byId("device-train-loss").querySelector("polyline");
  if (line === null || losses.length === 0) return;
  const lo = Math.min(...losses);
  const hi = Math.max(...losses);
  const span = hi - lo || 1;
  const dx = losses.length > 1 ? CHART_WIDTH / (losses.length - 1) : 0;
  line.setAttribute(
    "points",
    losses
      .map(
        (l, i) =>
          `${(i * dx).toFixed(1)},${(((hi - l) / span) * (CHART_HEIGHT - 4) + 2).toFixed(1)}`,
      )
      .join(" "),
  );
}

function setRunning(on: boolean): void {
  byId<HTMLButtonElement>("device-train-start").disabled = on;
  byId<HTMLButtonElement>("device-train-cancel").disabled = !on;
  // One session at a time on this device: generation waits for training.
  byId<HTMLButtonElement>("generate").disabled = on || state.model === null;
}

const fmt = (x: number | undefined) => (x === undefined ? "?" : x.toFixed(3));
