import { defineConfig } from "vitest/config";

// `npm run test:real-engine` (docs/testing.md): the gateway and a backplane in front of a real
// llama.cpp llama-server, built from source on first use (about 10 to 20 minutes, then reused).
// Not part of `npm test`.
export default defineConfig({
  test: {
    include: ["tests/real-engine/**/*.test.ts"],
    globalSetup: ["tests/real-engine/setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 240_000,
    pool: "forks",
    fileParallelism: false,
  },
});
