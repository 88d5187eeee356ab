import { defineConfig } from "vitest/config";

// Node-side tests: backplane, simulator, dev adapters and end-to-end tests against real processes.
// Worker tests run inside workerd from vitest.worker.config.ts (a separate run; see docs/testing.md).
export default defineConfig({
  test: {
    include: ["tests/node/**/*.test.ts", "tests/e2e/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
  },
});
