// The demo page: pick a user, load the model on this device, compare the base model with the
// user's personal model, upload an adapter, train a new one (on a worker, or on this device).
import { edgeApi } from "./api.ts";
import { setUpChat } from "./chat.ts";
import { loadDemoConfig } from "./config.ts";
import { setUpDeviceTraining } from "./device-train.ts";
import { byId, describe } from "./dom.ts";
import { startModel } from "./runtime.ts";
import { state, status } from "./state.ts";
import { setUpTraining } from "./train.ts";
import { setUpUpload } from "./upload.ts";
import { selectUser, setUpUsers } from "./users.ts";

async function main(): Promise<void> {
  const config = await loadDemoConfig();
  if (config) {
    state.modelId = config.model;
    state.users = config.users;
  } else {
    const models = (await edgeApi().listModels()) as { id: string }[];
    const wanted = new URLSearchParams(location.search).get("model");
    state.modelId = wanted ?? models[0]?.id ?? "";
    byId("token-form").hidden = false;
    byId("user-label").textContent = "User";
  }
  setUpUsers();
  setUpChat();
  setUpUpload();
  setUpTraining();
  setUpDeviceTraining();
  byId<HTMLSelectElement>("device").addEventListener("change", () => void startModel());
  if (state.users[0]) await selectUser(state.users[0]);
  await startModel();
}

main().catch((error) => {
  status.error = describe(error);
  byId("load-status").textContent = `the page could not start: ${describe(error)}`;
});
