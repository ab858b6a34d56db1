// The only module of the project that imports onnxruntime (web or node).
import { BackendError } from "../errors.ts";
import { DEVICE_TABLE, isNode, SUPPORTED_DEVICES } from "../platform.ts";
import type { Device, InferenceSession, Ort, Runtime, SessionOptions, Tensor } from "./types.ts";

export { DEVICE_TABLE, isNode, SUPPORTED_DEVICES } from "../platform.ts";
export type { Device, InferenceSession, Ort, Runtime, Tensor } from "./types.ts";

export interface BackendOptions {
  /** `auto`: WebGPU in a browser with an adapter, else WASM; `cpu` (onnxruntime-node) in Node. */
  device?: Device;
  /** Browser: where onnxruntime-web's .wasm/.mjs files are served (ort.env.wasm.wasmPaths). */
  wasmPaths?: string;
  /** WASM threads; Node needs 1 (onnxruntime-web cannot start its workers from file: URLs). */
  numThreads?: number;
}

/** The chosen backend and why it was chosen. */
export interface Backend {
  readonly device: Exclude<Device, "auto">;
  readonly runtime: Runtime;
  readonly executionProvider: string;
  readonly reason: string;
  readonly ort: Ort;
  /** WebGPU only: the device onnxruntime uses, for GPU-resident input tensors. */
  readonly gpuDevice: GPUDevice | undefined;
}

/** What a session is created from: a local path (onnxruntime-node) or the bytes. */
export interface ModelBytes {
  path?: string;
  bytes?: Uint8Array;
  /** External weights: file name as the graph names it, and its bytes. */
  externalData?: { path: string; data: Uint8Array }[];
}

async function webGpuAdapter(): Promise<{ ok: boolean; reason: string }> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (gpu === undefined) return { ok: false, reason: "navigator.gpu is undefined (no WebGPU)" };
  try {
    const adapter = await gpu.requestAdapter();
    if (adapter === null)
      return { ok: false, reason: "navigator.gpu.requestAdapter() returned null" };
    const info = adapter.info;
    return {
      ok: true,
      reason: `WebGPU adapter ${info.vendor || "?"}/${info.architecture || "?"}${info.isFallbackAdapter ? " (fallback adapter)" : ""}`,
    };
  } catch (error) {
    return { ok: false, reason: `requestAdapter failed: ${String(error)}` };
  }
}

async function importOrt(runtime: Runtime, device: Exclude<Device, "auto">): Promise<Ort> {
  if (runtime === "onnxruntime-node") return (await import("onnxruntime-node")) as unknown as Ort;
  // Node: the plain build for wasm; the WebGPU build when a WebGPU binding (e.g. Dawn's
  // `webgpu` package) provides navigator.gpu. The browser always gets the WebGPU build
  // (webgpu + wasm).
  if (isNode() && device === "wasm") return await import("onnxruntime-web");
  return (await import("onnxruntime-web/webgpu")) as unknown as Ort;
}

/** Pick the device (explaining why), import its runtime and configure it. */
export async function selectBackend(options: BackendOptions = {}): Promise<Backend> {
  const requested = options.device ?? "auto";
  if (!(SUPPORTED_DEVICES as readonly string[]).includes(requested)) {
    throw new BackendError(
      "unsupported_device",
      `unsupported device ${JSON.stringify(requested)}; supported: ${SUPPORTED_DEVICES.join(", ")}`,
    );
  }
  let device: Exclude<Device, "auto">;
  let reason: string;
  if (requested === "auto") {
    if (isNode()) {
      device = "cpu";
      reason = "Node: onnxruntime-node CPU provider";
    } else {
      const gpu = await webGpuAdapter();
      device = gpu.ok ? "webgpu" : "wasm";
      reason = gpu.ok ? gpu.reason : `falling back to wasm: ${gpu.reason}`;
    }
  } else {
    device = requested;
    reason = `requested ${requested}`;
    if (device === "cpu" && !isNode()) {
      throw new BackendError(
        "unsupported_device",
        "device cpu needs Node (onnxruntime-node); use wasm or webgpu in a browser",
      );
    }
    if (device === "webgpu") {
      const gpu = await webGpuAdapter();
      if (!gpu.ok) throw new BackendError("no_webgpu", `device webgpu requested but ${gpu.reason}`);
      reason = `requested webgpu: ${gpu.reason}`;
    }
  }
  const { runtime, executionProvider } = DEVICE_TABLE[device];
  let ort: Ort;
  try {
    ort = await importOrt(runtime, device);
  } catch (error) {
    throw new BackendError("runtime_missing", `cannot import ${runtime}: ${String(error)}`, {
      cause: error,
    });
  }
  if (runtime === "onnxruntime-web") {
    if (options.wasmPaths !== undefined) ort.env.wasm.wasmPaths = options.wasmPaths;
    const threads = options.numThreads ?? (isNode() ? 1 : undefined);
    if (threads !== undefined) ort.env.wasm.numThreads = threads;
  }
  return { device, runtime, executionProvider, reason, ort, gpuDevice: undefined };
}

export interface CreateSessionOptions {
  /** Outputs kept on the GPU (WebGPU): the KV cache, so decoding does not copy it back. */
  outputsOnGpu?: readonly string[];
}

/** Create a session; for WebGPU also returns the GPUDevice onnxruntime uses. */
export async function createSession(
  backend: Backend,
  model: ModelBytes,
  options: CreateSessionOptions = {},
): Promise<{ session: InferenceSession; backend: Backend }> {
  const sessionOptions: SessionOptions = {
    executionProviders: [backend.executionProvider],
    graphOptimizationLevel: "all",
  };
  if (backend.runtime === "onnxruntime-web" && model.externalData !== undefined) {
    sessionOptions.externalData = model.externalData;
  }
  if (
    backend.device === "webgpu" &&
    options.outputsOnGpu !== undefined &&
    options.outputsOnGpu.length > 0
  ) {
    const location: Record<string, "gpu-buffer"> = {};
    for (const name of options.outputsOnGpu) location[name] = "gpu-buffer";
    sessionOptions.preferredOutputLocation = location;
  }
  let session: InferenceSession;
  try {
    if (backend.runtime === "onnxruntime-node" && model.path !== undefined) {
      session = await backend.ort.InferenceSession.create(model.path, sessionOptions);
    } else if (
      backend.runtime === "onnxruntime-node" &&
      model.bytes !== undefined &&
      model.externalData !== undefined
    ) {
      session = await createFromTempFolder(
        backend,
        model.bytes,
        model.externalData,
        sessionOptions,
      );
    } else if (model.bytes !== undefined) {
      session = await backend.ort.InferenceSession.create(model.bytes, sessionOptions);
    } else {
      throw new Error("neither a path (onnxruntime-node) nor the model bytes were given");
    }
  } catch (error) {
    throw new BackendError(
      "session_create_failed",
      `${backend.runtime} (${backend.executionProvider}) could not create the session: ${String(error)}`,
      { cause: error },
    );
  }
  let gpuDevice: GPUDevice | undefined;
  if (backend.device === "webgpu") gpuDevice = (await backend.ort.env.webgpu.device) as GPUDevice;
  return { session, backend: { ...backend, gpuDevice } };
}

/**
 * onnxruntime-node ignores `externalData` and resolves the data file next to the graph's path,
 * so graph and data given as bytes are written to a temporary folder for the session to read.
 */
async function createFromTempFolder(
  backend: Backend,
  bytes: Uint8Array,
  externalData: { path: string; data: Uint8Array }[],
  options: SessionOptions,
): Promise<InferenceSession> {
  const fs = await import("node:fs/promises");
  const { join, basename } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const dir = await fs.mkdtemp(join(tmpdir(), "loraxs-session-"));
  try {
    const graph = join(dir, "model.onnx");
    await fs.writeFile(graph, bytes);
    for (const d of externalData) await fs.writeFile(join(dir, basename(d.path)), d.data);
    return await backend.ort.InferenceSession.create(graph, options);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** A CPU tensor. */
export function cpuTensor(
  backend: Backend,
  type: "float32" | "int64",
  data: Float32Array | BigInt64Array,
  dims: readonly number[],
): Tensor {
  return new backend.ort.Tensor(type, data, dims) as Tensor;
}

/** GPUBufferUsage flags for an input tensor (STORAGE | COPY_SRC | COPY_DST); named to avoid the global in Node. */
const STORAGE_COPY_SRC_DST = 0x80 | 0x04 | 0x08;

/**
 * The R input: on WebGPU uploaded once into a GPU buffer the tensor owns (dispose() destroys it);
 * elsewhere a CPU tensor over the same Float32Array.
 */
export function rTensor(backend: Backend, data: Float32Array, dims: readonly number[]): Tensor {
  const gpu = backend.gpuDevice;
  if (backend.device !== "webgpu" || gpu === undefined)
    return cpuTensor(backend, "float32", data, dims);
  // WebGPU buffer sizes must be a multiple of 4 bytes; float32 always is.
  const buffer = gpu.createBuffer({ size: data.byteLength, usage: STORAGE_COPY_SRC_DST });
  gpu.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return backend.ort.Tensor.fromGpuBuffer(buffer, {
    dataType: "float32",
    dims,
    dispose: () => buffer.destroy(),
  }) as Tensor;
}

/**
 * A float32 GPU buffer of `dims` (WebGPU only; zero-filled by WebGPU) seen as two tensors, one to
 * feed and one to fetch into: a KV cache that a graph reads as past and writes as present in place.
 * `destroy()` frees the buffer; null off WebGPU.
 */
export function gpuInOutTensors(
  backend: Backend,
  dims: readonly number[],
): { input: Tensor; output: Tensor; destroy(): void } | null {
  const gpu = backend.gpuDevice;
  if (backend.device !== "webgpu" || gpu === undefined) return null;
  const size = dims.reduce((a, b) => a * b, 1) * 4;
  const buffer = gpu.createBuffer({ size, usage: STORAGE_COPY_SRC_DST });
  const view = () =>
    backend.ort.Tensor.fromGpuBuffer(buffer, { dataType: "float32", dims }) as Tensor;
  return { input: view(), output: view(), destroy: () => buffer.destroy() };
}
