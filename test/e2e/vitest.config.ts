import { defineConfig } from "vitest/config";

// `npm run test:e2e`: npm start's server in real Chromium. Separate from `npm test` because the
// first run prepares a model (about a minute and a half on two cores).
export default defineConfig({
  test: {
    name: "e2e",
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/e2e/**/*.test.ts"],
    environment: "node",
    testTimeout: 300_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
