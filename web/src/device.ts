/** Which backend the page runs the model on, and the sentence that explains the choice. */
export interface DeviceChoice {
  device: "webgpu" | "wasm";
  /** Shown beside the badge: why this device (and what was wrong with the other). */
  note: string;
  /** A warning worth a yellow box (no WebGPU, software adapter, missing JSPI). */
  warn: boolean;
}

interface GpuProbe {
  ok: boolean;
  software: boolean;
  detail: string;
}

async function probeWebGpu(): Promise<GpuProbe> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (gpu === undefined)
    return {
      ok: false,
      software: false,
      detail: "this browser has no WebGPU (navigator.gpu is missing)",
    };
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (error) {
    return {
      ok: false,
      software: false,
      detail: `WebGPU requestAdapter() failed: ${String(error)}`,
    };
  }
  if (adapter === null)
    return {
      ok: false,
      software: false,
      detail: "WebGPU found no adapter (requestAdapter() returned null)",
    };
  const info = adapter.info;
  const name = [info.vendor, info.architecture].filter(Boolean).join(" / ") || "unknown adapter";
  const software =
    info.isFallbackAdapter === true ||
    /swiftshader/i.test(`${info.vendor} ${info.architecture} ${info.description}`);
  return {
    ok: true,
    software,
    detail: `WebGPU adapter ${name}${software ? " (software fallback)" : ""}`,
  };
}

/** The WebGPU build of onnxruntime-web shipped here uses JSPI (WebAssembly.Suspending). */
const hasJspi = () => "Suspending" in WebAssembly;

/**
 * `auto` picks WebGPU on a hardware adapter, and WASM when WebGPU is missing, when the adapter is
 * a software fallback (SwiftShader runs a 30-layer model far slower than WASM), or without JSPI.
 */
export async function chooseDevice(requested: "auto" | "webgpu" | "wasm"): Promise<DeviceChoice> {
  const gpu = await probeWebGpu();
  if (requested === "wasm")
    return { device: "wasm", note: `WASM chosen by hand; ${gpu.detail}`, warn: false };
  if (!hasJspi()) {
    return {
      device: "wasm",
      note: `running on WASM: this browser lacks JSPI (WebAssembly.Suspending), which the WebGPU build needs; ${gpu.detail}`,
      warn: true,
    };
  }
  if (!gpu.ok) return { device: "wasm", note: `running on WASM: ${gpu.detail}`, warn: true };
  if (requested === "webgpu") {
    return {
      device: "webgpu",
      note: `WebGPU chosen by hand: ${gpu.detail}${gpu.software ? " — expect it to be much slower than WASM here" : ""}`,
      warn: gpu.software,
    };
  }
  if (gpu.software) {
    return {
      device: "wasm",
      note: `running on WASM: ${gpu.detail} is slower than WASM for this model; choose WebGPU above to try it anyway`,
      warn: true,
    };
  }
  return { device: "webgpu", note: gpu.detail, warn: false };
}
