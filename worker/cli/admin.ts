/**
 * `npm run admin -- <command>`: manage tenants, environments, keys, regions, models and nodes
 * directly in Postgres (the admin HTTP API comes later). Reads DATABASE_URL, and for cache
 * invalidation UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN and REDIS_PREFIX; node commands
 * read NODE_SIGNING_SECRET. This is the only file of the CLI that reads process.env and argv.
 */
import { parseArgs } from "node:util";
import { Redis } from "@upstash/redis";
import { deriveNodeSecret } from "../../schema/contracts/signing.ts";
import { openDb } from "../../dev/db.ts";
import { runAdminCommand, ADMIN_HELP, AdminUsageError, type AdminContext } from "./commands.ts";

const STRING_FLAGS = ["name", "plan", "tenant", "env", "region", "scopes", "models", "expires", "id", "prefix", "lat", "lon", "context", "kind", "family", "input-price", "output-price", "url"];
let parsed: ReturnType<typeof parseArgs>;
try {
  parsed = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    strict: true,
    options: { ...Object.fromEntries(STRING_FLAGS.map((f) => [f, { type: "string" as const }])), help: { type: "boolean" } },
  });
} catch (err) {
  console.error(`${err instanceof Error ? err.message : String(err)}\n\n${ADMIN_HELP}`);
  process.exit(2);
}
const { positionals, values } = parsed;
const flags = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, typeof v === "string" ? v : v === true ? "true" : undefined]));

if (positionals.length === 0 || flags.help === "true") {
  console.log(ADMIN_HELP);
  process.exit(positionals.length === 0 && flags.help !== "true" ? 2 : 0);
}
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error("Set DATABASE_URL to the gateway's Postgres (Neon) connection string.");
  process.exit(2);
}
const redisUrl = process.env.UPSTASH_REDIS_REST_URL;
const redisToken = process.env.UPSTASH_REDIS_REST_TOKEN;
const handle = openDb(databaseUrl);
const context: AdminContext = {
  db: handle.db,
  actor: process.env.SWITCHYARD_ADMIN_ACTOR ?? `cli:${process.env.USER ?? "unknown"}`,
  redis: redisUrl && redisToken ? new Redis({ url: redisUrl, token: redisToken, enableTelemetry: false }) : null,
  redisPrefix: process.env.REDIS_PREFIX ?? "sy:",
  nodeSecret: (nodeId, version) => {
    const master = process.env.NODE_SIGNING_SECRET;
    if (!master) throw new AdminUsageError("Set NODE_SIGNING_SECRET (the same value as the worker's secret) to derive node secrets.");
    return deriveNodeSecret(master, nodeId, version);
  },
  print: (line) => console.log(line),
  warn: (line) => console.error(line),
};
try {
  await runAdminCommand(context, positionals, flags);
} catch (err) {
  console.error(err instanceof AdminUsageError ? err.message : err);
  process.exitCode = err instanceof AdminUsageError ? 2 : 1;
} finally {
  await handle.close();
}
