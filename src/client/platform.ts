import type { Device, Runtime } from "./backend/types.ts";

/** Device → runtime and onnxruntime execution provider (transformers.js keeps the same table). */
export const DEVICE_TABLE: Readonly<
  Record<Exclude<Device, "auto">, { runtime: Runtime; executionProvider: string }>
> = {
  cpu: { runtime: "onnxruntime-node", executionProvider: "cpu" },
  wasm: { runtime: "onnxruntime-web", executionProvider: "wasm" },
  webgpu: { runtime: "onnxruntime-web", executionProvider: "webgpu" },
};

export const SUPPORTED_DEVICES = ["auto", ...Object.keys(DEVICE_TABLE)] as const;

export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return (
    typeof p?.versions?.node === "string" &&
    typeof (globalThis as { window?: unknown }).window === "undefined"
  );
}
