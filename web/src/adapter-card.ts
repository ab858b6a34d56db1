import type { AdapterVersion } from "../../src/client/index.ts";
import { listVersions } from "./api.ts";
import { byId, describe, formatBytes } from "./dom.ts";
import { state, status } from "./state.ts";

export /** Fetches the user's adapter (ETag revalidation, cached) and swaps it into the model's R. */
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

/** Shows the user's current adapter: the API's version record plus the decoded file's metadata. */
export async function refreshCard(): Promise<void> {
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

export function showAdapterCard(rows: [string, string][]): void {
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
