import type { AdapterClient, FetchedAdapter, PersonalModel } from "../../src/client/index.ts";
import type { DemoUser } from "./config.ts";

/** What the page holds: the model on this device, the chosen user and their adapter. */
export const state: {
  modelId: string;
  model: PersonalModel | null;
  user: DemoUser | null;
  client: AdapterClient | null;
  adapter: FetchedAdapter | null;
  users: DemoUser[];
} = { modelId: "", model: null, user: null, client: null, adapter: null, users: [] };

/** What the page has done so far, as `globalThis.demo` (the end-to-end test reads it). */
export const status = {
  ready: false,
  device: "",
  /** The graph variant the model runs, and what its load downloaded / found in Cache Storage. */
  graph: "",
  downloadedBytes: 0,
  cachedFiles: 0,
  user: "",
  /** The adapter version in use (0: none, the base model). */
  version: 0,
  generations: 0,
  /** The last comparison: each side's text and token count. */
  last: [] as { label: string; text: string; tokens: number }[],
  /** The last on-device training: its state, loss per step and the uploaded adapter version. */
  training: {
    state: "idle" as "idle" | "running" | "done" | "cancelled" | "error",
    losses: [] as number[],
    version: 0,
    error: "",
  },
  error: "",
};
(globalThis as unknown as { demo: typeof status }).demo = status;

export const modelUrl = () => `${location.origin}/v1/models/${encodeURIComponent(state.modelId)}`;
