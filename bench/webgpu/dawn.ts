// navigator.gpu in Node from Dawn's binding (npm `webgpu`), installed before onnxruntime-web loads.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  fallback: boolean;
}

/** Load `<root>/webgpu/index.js` and expose its GPU as navigator.gpu; null when no adapter.
 * `flags` go to Dawn's binding (e.g. `disable-dawn-features=timestamp_quantization`). */
export async function installDawn(
  root: string,
  flags: string[] = [],
): Promise<AdapterSummary | null> {
  const { create, globals } = (await import(
    pathToFileURL(join(root, "webgpu", "index.js")).href
  )) as {
    create: (flags: string[]) => GPU;
    globals: Record<string, unknown>;
  };
  Object.assign(globalThis, globals);
  Object.defineProperty(globalThis.navigator, "gpu", {
    value: create(flags),
    configurable: true,
    writable: true,
  });
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (adapter === null) return null;
  const i = adapter.info;
  return {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    fallback: i.isFallbackAdapter ?? false,
  };
}

/** installDawn when there is a root; null without one, and null (logged) when it fails. */
export async function tryDawn(
  root: string | undefined,
  log: (...a: unknown[]) => void,
): Promise<AdapterSummary | null> {
  if (root === undefined) return null;
  return installDawn(root).catch((error: unknown) => {
    log("no WebGPU:", String(error));
    return null;
  });
}
