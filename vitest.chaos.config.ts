import { defineConfig } from "vitest/config";

// The soak test (`npm run test:chaos`, docs/testing.md): the whole local stack under mixed traffic for
// SOAK_MINUTES per topology. Not part of `npm test` (vitest.config.ts does not include tests/chaos).
const minutes = Number(process.env.SOAK_MINUTES || 15);
export default defineConfig({
  test: {
    include: ["tests/chaos/**/*.test.ts"],
    // Each topology runs for SOAK_MINUTES, plus its start and stop.
    testTimeout: (minutes * 60 + 180) * 1000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false,
  },
});
