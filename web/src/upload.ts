import { refreshCard, useAdapter } from "./adapter-card.ts";
import { edgeApi } from "./api.ts";
import { byId, describe, formatBytes, onSubmit, showVerdict } from "./dom.ts";
import { state } from "./state.ts";

/** The upload form: sends a .safetensors file as the user's next adapter and shows the verdict. */
export function setUpUpload(): void {
  const verdict = byId("upload-verdict");
  onSubmit("upload-form", async () => {
    const file = byId<HTMLInputElement>("upload-file").files?.[0];
    const { user, model } = state;
    if (!file) return showVerdict(verdict, false, "choose a .safetensors file first");
    if (!user) return showVerdict(verdict, false, "choose a user first");
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
        : await edgeApi(user.token).putAdapter(state.modelId, user.id, bytes);
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
