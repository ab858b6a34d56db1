/** Where things live in KV and R2. */

export const kvAdapterKey = (model: string, user: string) => `adapter/${model}/${user}`;

export const r2AdapterPrefix = (model: string, user: string) => `adapters/${model}/${user}/`;
export const r2AdapterKey = (model: string, user: string, version: number) =>
  `${r2AdapterPrefix(model, user)}${version}.safetensors`;

export const r2ModelPrefix = (model: string) => `models/${model}/`;
export const r2ModelFile = (model: string, name: string) => `${r2ModelPrefix(model)}${name}`;
export const r2Manifest = (model: string) => r2ModelFile(model, "manifest.json");

export const r2JobData = (id: string) => `jobs/${id}/data.json`;

/** The metadata stored beside the KV copy, so one getWithMetadata serves GET adapter. */
export type AdapterKvMeta = { etag: string; version: number; created: string };
