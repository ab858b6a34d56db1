// Types of the onnxruntime API the client uses. Both runtimes implement onnxruntime-common.
import type * as OrtWeb from "onnxruntime-web";

export type Ort = typeof OrtWeb;
export type Tensor = OrtWeb.Tensor;
export type InferenceSession = OrtWeb.InferenceSession;
export type SessionOptions = OrtWeb.InferenceSession.SessionOptions;
export type TensorDataType = OrtWeb.Tensor.Type;

/** Where the client runs a model: a device name the app chooses, or `auto`. */
export type Device = "auto" | "webgpu" | "wasm" | "cpu";
/** Which onnxruntime package runs it. */
export type Runtime = "onnxruntime-node" | "onnxruntime-web";
