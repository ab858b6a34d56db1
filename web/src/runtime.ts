import { useAdapter } from "./adapter-card.ts";
import { chooseDevice } from "./device.ts";
import { showDeviceTraining } from "./device-train.ts";
import { byId, describe } from "./dom.ts";
import { loadWithProgress } from "./loader.ts";
import { modelUrl, state, status } from "./state.ts";

/** (Re)loads the model on the device the backend picker asks for, then swaps in the user's R. */
export async function startModel(): Promise<void> {
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
    status.graph = model.graph.name;
    status.downloadedBytes = model.timings.downloadedBytes;
    status.cachedFiles = model.timings.cachedFiles;
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
  await showDeviceTraining();
}
