import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Worker tests run inside workerd against real Postgres and Redis (through the dev adapters) and a
// real backplane + simulated engine, all started by the global setup in Node.
export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: { bindings: inject("bindings") },
    })),
  ],
  test: {
    include: ["tests/worker/**/*.test.ts"],
    globalSetup: ["tests/support/worker-global-setup.ts"],
    // One file at a time: the hot-path test counts database sessions opened by the worker.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
