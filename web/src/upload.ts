import { refreshCard, useAdapter } from "./adapter-card.ts";
import type { DemoUser } from "./config.ts";
import { byId, describe, formatBytes, showVerdict } from "./dom.ts";
import { state } from "./state.ts";

/** The upload form: sends a .safetensors file as the user's next adapter and shows the verdict. */
export function setUpUpload(): void {
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
