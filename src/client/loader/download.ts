import { ModelFileError } from "../errors.ts";

export interface Progress {
  file: string;
  phase: "cached" | "download" | "verify" | "done";
  loaded: number;
  total: number;
}

/** Read a response body into one buffer, reporting progress per chunk. */
export async function readBody(
  file: string,
  response: Response,
  expectedBytes: number,
  onProgress?: (p: Progress) => void,
): Promise<Uint8Array> {
  if (response.body === null) return new Uint8Array(await response.arrayBuffer());
  // Preallocate when the manifest says the size; a longer body is refused rather than grown.
  const out = new Uint8Array(expectedBytes);
  let loaded = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.byteLength > expectedBytes) {
      await reader.cancel();
      throw new ModelFileError(
        "size_mismatch",
        file,
        `body is longer than the manifest's ${expectedBytes} bytes`,
      );
    }
    out.set(value, loaded);
    loaded += value.byteLength;
    onProgress?.({ file, phase: "download", loaded, total: expectedBytes });
  }
  if (loaded !== expectedBytes) {
    throw new ModelFileError(
      "size_mismatch",
      file,
      `got ${loaded} bytes, manifest says ${expectedBytes}`,
    );
  }
  return out;
}
