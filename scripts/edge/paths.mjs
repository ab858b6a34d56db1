// Where things are, relative to the repository root.
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("../..", import.meta.url));

/** The web bundle and the assets the Worker serves (wrangler.toml [assets] directory). */
export const webOut = join(root, ".cache", "web");

/** Local-only demo settings the page reads; written by `npm start`, never deployed. */
export const demoConfigPath = join(webOut, "demo-config.json");

export const modelsDir = join(root, "models");

export const devVarsPath = join(root, ".dev.vars");
