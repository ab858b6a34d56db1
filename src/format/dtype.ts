// The element types an adapter may store, and their sizes.

export type Dtype = "F16" | "F32" | "BF16";

/** Accepted dtypes; writers default to the first. */
export const DTYPES: readonly Dtype[] = ["F16", "F32", "BF16"];

export const DEFAULT_DTYPE: Dtype = "F16";

/** Bytes per element. */
export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = { F16: 2, F32: 4, BF16: 2 };

export function isDtype(value: unknown): value is Dtype {
  return value === "F16" || value === "F32" || value === "BF16";
}

/** Whether this machine stores numbers little-endian (every platform we run on does). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
