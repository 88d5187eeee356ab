import { configDefaults, defineConfig } from "vitest/config";

// The chaos suite (tests/chaos/*.test.ts, docs/testing.md "Chaos suite"): one scenario per file, each on
// its own stack, a few minutes in all. `npm run chaos` runs the scenarios; the soak test
// (tests/chaos/soak.test.ts, SOAK_MINUTES per topology, default 15) joins them only when SOAK_MINUTES is
// set. `npm run test:chaos` runs the soak and the scenarios, as it always ran the soak. npm names the
// running script in npm_lifecycle_event. Neither is part of `npm test` (vitest.config.ts does not
// include tests/chaos).
const leaveSoakOut = process.env.npm_lifecycle_event === "chaos" && !process.env.SOAK_MINUTES;
const minutes = Number(process.env.SOAK_MINUTES || 15);
export default defineConfig({
  test: {
    include: ["tests/chaos/**/*.test.ts"],
    exclude: [...configDefaults.exclude, ...(leaveSoakOut ? ["tests/chaos/soak.test.ts"] : [])],
    // Each soak topology runs for SOAK_MINUTES, plus its start and stop; a scenario
    // (tests/chaos/*.test.ts other than the soak) sets its own bound, SCENARIO_TIMEOUT_MS.
    testTimeout: (minutes * 60 + 180) * 1000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false,
  },
});
