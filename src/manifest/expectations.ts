import type { AdapterExpectations } from "../format/index.ts";
import type { Manifest } from "./schema.ts";

/** What an adapter for this model must match (encoders also pin the head's hidden size). */
export function expectationsFor(
  manifest: Pick<Manifest, "id" | "family" | "factors" | "rank" | "modules"> & {
    config: { hidden_size: number };
  },
): AdapterExpectations {
  const expect: AdapterExpectations = {
    model: manifest.id,
    factors: manifest.factors.sha256,
    rank: manifest.rank,
    modules: manifest.modules.length,
  };
  if (manifest.family === "encoder") expect.hidden = manifest.config.hidden_size;
  return expect;
}
