import type { Dtype } from "./dtype.ts";
import type { TensorName } from "./header.ts";

/** A tensor entry of the header once its fields are checked. */
export interface Entry {
  name: TensorName;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}
