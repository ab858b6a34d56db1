import { type Backend, rTensor, type Tensor } from "./backend/index.ts";
import { ClientError } from "./errors.ts";

interface Entry {
  tensor: Tensor;
  label: string;
  refs: number;
  retired: boolean;
}

/** A reference to the R tensor a run (or a whole generation) uses; release it when done. */
export interface RLease {
  readonly tensor: Tensor;
  readonly label: string;
  release(): void;
}

/**
 * The model's one `R` input. Swapping replaces this tensor only (the session is untouched); on
 * WebGPU the new R is uploaded once into a GPU buffer and the previous buffer is destroyed as
 * soon as no generation that started with it is still running.
 */
export class RSlot {
  readonly dims: readonly [number, number, number];
  private readonly backend: Backend;
  private current: Entry;
  private readonly size: number;

  constructor(backend: Backend, dims: readonly [number, number, number]) {
    this.backend = backend;
    this.dims = dims;
    this.size = dims[0] * dims[1] * dims[2];
    this.current = this.entry(new Float32Array(this.size), "zeros");
  }

  private entry(data: Float32Array, label: string): Entry {
    return { tensor: rTensor(this.backend, data, this.dims), label, refs: 0, retired: false };
  }

  /** Where R lives: `gpu-buffer` on WebGPU, `cpu` elsewhere. */
  get location(): string {
    return this.current.tensor.location;
  }

  get label(): string {
    return this.current.label;
  }

  /** Replace R (`null`: zeros, the plain base model). */
  set(data: Float32Array | null, label = data === null ? "zeros" : "adapter"): void {
    const values = data ?? new Float32Array(this.size);
    if (values.length !== this.size) {
      throw new ClientError(
        "r_shape_mismatch",
        `R has ${values.length} values; the model needs [${this.dims.join(", ")}] = ${this.size}`,
      );
    }
    const previous = this.current;
    this.current = this.entry(values, label);
    previous.retired = true;
    if (previous.refs === 0) previous.tensor.dispose();
  }

  acquire(): RLease {
    const entry = this.current;
    entry.refs += 1;
    let released = false;
    return {
      tensor: entry.tensor,
      label: entry.label,
      release: () => {
        if (released) return;
        released = true;
        entry.refs -= 1;
        if (entry.refs === 0 && entry.retired) entry.tensor.dispose();
      },
    };
  }

  dispose(): void {
    this.current.retired = true;
    if (this.current.refs === 0) this.current.tensor.dispose();
  }
}
