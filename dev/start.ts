/**
 * `npm start`: the whole Switchyard stack on this machine. Settings come from the environment
 * (documented in docs/configuration.md); everything started here stops on Ctrl-C or SIGTERM.
 */
import { join } from "node:path";
import { ROOT, startStack } from "./stack.ts";

const stack = await startStack({
  dataDir: process.env.SWITCHYARD_DATA_DIR ?? join(ROOT, ".data", "dev"),
  databaseUrl: process.env.DATABASE_URL || undefined,
  redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
  redisPrefix: process.env.SWITCHYARD_REDIS_PREFIX || "sy:dev:",
  host: "127.0.0.1",
  gatewayPort: Number(process.env.PORT || 8787),
  simArgs: (process.env.SIM_ARGS ?? "").split(" ").filter(Boolean),
  echo: process.env.SWITCHYARD_QUIET !== "1",
}).catch((err: unknown) => {
  console.error(`\nSwitchyard could not start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});

console.log("");
console.log(`Gateway: ${stack.gatewayUrl}/v1`);
console.log(`Demo API key: ${stack.apiKey}`);
console.log(`Admin token: ${stack.adminToken}`);
console.log(`Postgres: ${stack.databaseUrl}${stack.embeddedPostgres ? " (embedded PGlite under .data/dev/pglite)" : ""}`);
console.log("");
console.log("Try it:");
console.log(`  curl ${stack.gatewayUrl}/v1/chat/completions -H "Authorization: Bearer ${stack.apiKey}" -H "Content-Type: application/json" -d '{"model":"sim-llama-8b","messages":[{"role":"user","content":"Hello"}]}'`);
const urlFlag = stack.gatewayUrl === "http://127.0.0.1:8787" ? "" : ` --url ${stack.gatewayUrl}`;
console.log(`  npm run admin -- tenant list${urlFlag}    (the admin CLI reads the local admin token by itself)`);
console.log("Press Ctrl-C to stop.");

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log("\nStopping Switchyard…");
    void stack.close().then(() => process.exit(0));
  });
}
for (const child of stack.children) {
  child.process.once("exit", (code) => {
    if (stopping) return;
    console.error(`\n${child.name} exited unexpectedly (code ${code}). Stopping the stack.\n${child.recentOutput()}`);
    stopping = true;
    void stack.close().then(() => process.exit(1));
  });
}
