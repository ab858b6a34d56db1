// What onnxruntime-web asks of the GPU, seen from the WebGPU API underneath it (Dawn's classes,
// patched in place): dispatches, compute passes, encoders, submits and buffer writes per decode
// step, and with `timing` on, each dispatch's GPU time from timestamp queries, by pipeline.
// Timing splits every compute pass into one pass per dispatch (timestamps are written at pass
// boundaries), so a timed step runs slower than an untimed one; the kernel times stay comparable.

type Fn = (...args: unknown[]) => unknown;
/** A replacement method: any `this` and parameters (it is installed on the prototype untyped). */
type Method = (this: never, ...args: never[]) => unknown;
type Proto = Record<string, Fn>;

export interface Counts {
  dispatches: number;
  passes: number;
  encoders: number;
  submits: number;
  writeBuffers: number;
}

/** Counts over `steps` decode steps, as per-step means (one decimal). */
export const countsPerStep = (c: Counts, steps: number): Record<string, number> =>
  Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Math.round((v / steps) * 10) / 10]));

export interface KernelTime {
  pipeline: string;
  dispatches: number;
  gpuMs: number;
}

interface Pending {
  read: GPUBuffer;
  names: string[];
  pool: QueryBlock;
}

interface QueryBlock {
  set: GPUQuerySet;
  resolve: GPUBuffer;
  read: GPUBuffer;
}

// WebGPU's flag values: the globals exist in Dawn's binding, not in the DOM types.
const USAGE = { MAP_READ: 0x0001, COPY_SRC: 0x0004, COPY_DST: 0x0008, QUERY_RESOLVE: 0x0200 };
const MAP_MODE_READ = 0x0001;
/** Dispatches timed per encoder (two queries each; WebGPU allows 4,096 queries a set). */
const MAX_TIMED = 2048;

export class GpuTrace {
  counts: Counts = { dispatches: 0, passes: 0, encoders: 0, submits: 0, writeBuffers: 0 };
  timing = false;
  private names = new WeakMap<object, string>();
  private moduleNames = new WeakMap<object, string>();
  private encoders = new WeakMap<object, { block: QueryBlock; names: string[] }>();
  private free: QueryBlock[] = [];
  private pending: Pending[] = [];
  private submitted: Pending[] = [];
  private kernels = new Map<string, { dispatches: number; ns: bigint }>();
  private device: GPUDevice | undefined;
  /** Each unlabelled module's name and the start of its WGSL, to tell which operator it is. */
  readonly sources = new Map<string, string>();

  /** Patches Dawn's classes (after installDawn, before onnxruntime asks for a device). */
  constructor(g: Record<string, { prototype: Proto }> = globalThis as never) {
    const self = this;
    const wrap = (cls: string, method: string, make: (orig: Fn) => Method) => {
      const proto = g[cls]?.prototype;
      if (proto === undefined || typeof proto[method] !== "function") return;
      proto[method] = make(proto[method] as Fn) as Fn;
    };
    // Ask for timestamp queries where the adapter has them (onnxruntime asks for its own features).
    wrap(
      "GPUAdapter",
      "requestDevice",
      (orig) =>
        async function (this: GPUAdapter, desc?: GPUDeviceDescriptor) {
          const features = [...(desc?.requiredFeatures ?? [])];
          if (this.features.has("timestamp-query") && !features.includes("timestamp-query"))
            features.push("timestamp-query");
          const device = (await orig.call(this, {
            ...desc,
            requiredFeatures: features,
          })) as GPUDevice;
          // onnxruntime makes a new device once its sessions are gone: query sets stay per device.
          self.device = device;
          self.free = [];
          return device;
        },
    );
    // A call that is only counted.
    const count = (cls: string, method: string, key: keyof Counts) =>
      wrap(
        cls,
        method,
        (orig) =>
          function (this: unknown, ...args: unknown[]) {
            self.counts[key]++;
            return orig.apply(this, args);
          },
      );
    wrap(
      "GPUDevice",
      "createShaderModule",
      (orig) =>
        function (this: GPUDevice, desc: GPUShaderModuleDescriptor) {
          const module = orig.call(this, desc) as object;
          const label = desc.label || shaderName(desc.code);
          if (!desc.label) self.sources.set(label, desc.code.slice(0, 3000));
          self.moduleNames.set(module, label);
          return module;
        },
    );
    const name = (desc: GPUComputePipelineDescriptor) =>
      desc.label || self.moduleNames.get(desc.compute.module) || "?";
    wrap(
      "GPUDevice",
      "createComputePipeline",
      (orig) =>
        function (this: GPUDevice, desc: GPUComputePipelineDescriptor) {
          const p = orig.call(this, desc) as object;
          self.names.set(p, name(desc));
          return p;
        },
    );
    wrap(
      "GPUDevice",
      "createComputePipelineAsync",
      (orig) =>
        async function (this: GPUDevice, desc: GPUComputePipelineDescriptor) {
          const p = (await orig.call(this, desc)) as object;
          self.names.set(p, name(desc));
          return p;
        },
    );
    count("GPUDevice", "createCommandEncoder", "encoders");
    count("GPUQueue", "writeBuffer", "writeBuffers");
    wrap(
      "GPUQueue",
      "submit",
      (orig) =>
        function (this: GPUQueue, ...args: unknown[]) {
          self.counts.submits++;
          const r = orig.apply(this, args);
          self.submitted.push(...self.pending);
          self.pending = [];
          return r;
        },
    );
    count("GPUComputePassEncoder", "dispatchWorkgroups", "dispatches");
    wrap(
      "GPUCommandEncoder",
      "beginComputePass",
      (orig) =>
        function (this: GPUCommandEncoder, desc?: GPUComputePassDescriptor) {
          self.counts.passes++;
          if (!self.timing || desc?.timestampWrites !== undefined || self.device === undefined)
            return orig.call(this, desc);
          return self.recordingPass(this, orig);
        },
    );
    wrap(
      "GPUCommandEncoder",
      "finish",
      (orig) =>
        function (this: GPUCommandEncoder, ...args: unknown[]) {
          const timed = self.encoders.get(this);
          if (timed !== undefined && timed.names.length > 0) {
            const n = timed.names.length * 2;
            this.resolveQuerySet(timed.block.set, 0, n, timed.block.resolve, 0);
            this.copyBufferToBuffer(timed.block.resolve, 0, timed.block.read, 0, n * 8);
            self.pending.push({ read: timed.block.read, names: timed.names, pool: timed.block });
          } else if (timed !== undefined) self.free.push(timed.block);
          self.encoders.delete(this);
          return orig.apply(this, args);
        },
    );
  }

  /** A stand-in compute pass: its commands are replayed at end() as one timed pass a dispatch. */
  private recordingPass(encoder: GPUCommandEncoder, begin: Fn) {
    const ops: [string, unknown[]][] = [];
    const self = this;
    const record =
      (op: string) =>
      (...args: unknown[]) => {
        ops.push([op, args]);
      };
    return {
      label: "",
      setPipeline: record("setPipeline"),
      setBindGroup: record("setBindGroup"),
      dispatchWorkgroups: record("dispatchWorkgroups"),
      dispatchWorkgroupsIndirect: record("dispatchWorkgroupsIndirect"),
      pushDebugGroup() {},
      popDebugGroup() {},
      insertDebugMarker() {},
      end() {
        let pipeline: unknown;
        const groups = new Map<unknown, unknown[]>();
        for (const [op, args] of ops) {
          if (op === "setPipeline") pipeline = args[0];
          else if (op === "setBindGroup") groups.set(args[0], args);
          else {
            const slot = self.slot(encoder);
            const pass = begin.call(
              encoder,
              slot === undefined
                ? undefined
                : {
                    timestampWrites: {
                      querySet: slot.set,
                      beginningOfPassWriteIndex: slot.index,
                      endOfPassWriteIndex: slot.index + 1,
                    },
                  },
            ) as GPUComputePassEncoder;
            if (slot !== undefined) slot.names.push(self.names.get(pipeline as object) ?? "?");
            pass.setPipeline(pipeline as GPUComputePipeline);
            for (const g of groups.values()) (pass.setBindGroup as (...a: unknown[]) => void)(...g);
            self.counts.dispatches++;
            (pass[op as "dispatchWorkgroups"] as (...a: unknown[]) => void)(...args);
            pass.end();
          }
        }
      },
    };
  }

  private slot(encoder: GPUCommandEncoder) {
    let timed = this.encoders.get(encoder);
    if (timed === undefined) {
      timed = { block: this.free.pop() ?? this.newBlock(), names: [] };
      this.encoders.set(encoder, timed);
    }
    if (timed.names.length >= MAX_TIMED) return undefined;
    return { set: timed.block.set, index: timed.names.length * 2, names: timed.names };
  }

  private newBlock(): QueryBlock {
    const d = this.device as GPUDevice;
    return {
      set: d.createQuerySet({ type: "timestamp", count: MAX_TIMED * 2 }),
      resolve: d.createBuffer({
        size: MAX_TIMED * 16,
        usage: USAGE.QUERY_RESOLVE | USAGE.COPY_SRC,
      }),
      read: d.createBuffer({ size: MAX_TIMED * 16, usage: USAGE.MAP_READ | USAGE.COPY_DST }),
    };
  }

  /** Whether timestamps can be taken (the device has the feature). */
  get canTime(): boolean {
    return this.device?.features.has("timestamp-query") ?? false;
  }

  /** Reads the timestamps of everything submitted so far; returns the GPU span they cover (ms). */
  async collect(): Promise<{ spanMs: number; kernelMs: number }> {
    const done = this.submitted;
    this.submitted = [];
    let first: bigint | undefined;
    let last: bigint | undefined;
    let sum = 0n;
    for (const p of done) {
      await p.read.mapAsync(MAP_MODE_READ);
      const t = new BigUint64Array(p.read.getMappedRange().slice(0, p.names.length * 16));
      p.read.unmap();
      p.names.forEach((name, i) => {
        const [b, e] = [t[2 * i] as bigint, t[2 * i + 1] as bigint];
        const k = this.kernels.get(name) ?? { dispatches: 0, ns: 0n };
        this.kernels.set(name, k);
        k.dispatches++;
        k.ns += e > b ? e - b : 0n;
        sum += e > b ? e - b : 0n;
        if (first === undefined || b < first) first = b;
        if (last === undefined || e > last) last = e;
      });
      this.free.push(p.pool);
    }
    const span = first !== undefined && last !== undefined ? Number(last - first) / 1e6 : 0;
    return { spanMs: span, kernelMs: Number(sum) / 1e6 };
  }

  /** Kernel times gathered so far, largest first; `reset` starts a new tally. */
  kernelTimes(reset = false): KernelTime[] {
    const rows = [...this.kernels].map(([pipeline, k]) => ({
      pipeline,
      dispatches: k.dispatches,
      gpuMs: Number(k.ns) / 1e6,
    }));
    if (reset) this.kernels.clear();
    return rows.sort((x, y) => y.gpuMs - x.gpuMs);
  }

  resetCounts(): Counts {
    const c = this.counts;
    this.counts = { dispatches: 0, passes: 0, encoders: 0, submits: 0, writeBuffers: 0 };
    return c;
  }
}

/** A name for an unlabelled WGSL module: its length and a hash of its text. */
const shaderName = (code: string) => `wgsl-${code.length}-${hash(code)}`;

const hash = (s: string) => {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0).toString(16);
};
