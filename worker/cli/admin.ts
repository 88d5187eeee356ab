/**
 * `npm run admin -- <command>`: the operator's CLI. Tenancy, limits, budgets, counters and the audit
 * log go through the gateway's admin API (--url / SWITCHYARD_URL, --token / SWITCHYARD_ADMIN_TOKEN,
 * else the local stack's admin token file); regions, models and nodes are written straight to
 * Postgres (DATABASE_URL, NODE_SIGNING_SECRET, UPSTASH_REDIS_REST_URL/TOKEN, REDIS_PREFIX).
 * This is the only file of the CLI that reads process.env and argv.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "@upstash/redis";
import { deriveNodeSecret } from "../../schema/contracts/signing.ts";
import { openDb, type NodeDb } from "../../dev/db.ts";
import { readStackRecord } from "../../dev/stack-record.ts";
import { ApiFailure, adminApi, type AdminApi } from "./client.ts";
import { ADMIN_HELP, AdminUsageError, runAdminCommand } from "./commands.ts";
import { findSky, skyCli, type SkyCli } from "./sky.ts";
import type { InfraContext } from "./infra.ts";

const STRING_FLAGS = [
  "url", "token", "name", "plan", "status", "tenant", "env", "region", "scopes", "models", "expires", "overlap", "rpm", "tpm", "concurrency",
  "kind", "period", "amount", "target", "limit", "cursor", "id", "lat", "lon", "context", "family", "input-price", "output-price", "node", "since",
  "cached-price", "active", "start", "end", "bucket", "group-by", "multiplier", "usd", "note",
  "model", "tps", "nodes", "strategy", "region-overrides", "base-model", "adapter-source", "source", "audio-price", "engine", "audit",
  "cache", "cache-hit-factor", "priority",
  "chunk-tokens", "buffer-tokens", "interval", "timeout",
  "file", "council",
  "provider", "gpu", "count", "spot", "state", "reason", "interval-ms",
  "min", "max", "scale-up-after", "idle", "mode",
];
const BOOLEAN_FLAGS = ["json", "all", "help", "alerts", "run", "apply", "dry-run", "once"];
/** String flags that may also stand alone for `true` (`--spot` is `--spot true`). */
const BARE_TRUE_FLAGS = ["spot"];
/** Flags that may be given several times, their values joined as one comma list (`--alias a --alias b` is `--alias a,b`). */
const LIST_FLAGS = ["alias"];
const DEFAULT_URL = "http://127.0.0.1:8787";
const ROOT = resolve(import.meta.dirname, "../..");

/** `--spot` followed by nothing, another flag or a word other than true/false becomes `--spot=true`. */
function bareTrue(args: string[]): string[] {
  return args.map((a, i) => {
    const next = args[i + 1];
    const bare = BARE_TRUE_FLAGS.some((f) => a === `--${f}`) && (next === undefined || next.startsWith("--") || !["true", "false"].includes(next));
    return bare ? `${a}=true` : a;
  });
}

let parsed: ReturnType<typeof parseArgs>;
try {
  parsed = parseArgs({
    args: bareTrue(process.argv.slice(2)),
    allowPositionals: true,
    strict: true,
    options: {
      ...Object.fromEntries(STRING_FLAGS.map((f) => [f, { type: "string" as const }])),
      ...Object.fromEntries(BOOLEAN_FLAGS.map((f) => [f, { type: "boolean" as const }])),
      ...Object.fromEntries(LIST_FLAGS.map((f) => [f, { type: "string" as const, multiple: true as const }])),
    },
  });
} catch (err) {
  console.error(`${err instanceof Error ? err.message : String(err)}\n\n${ADMIN_HELP}`);
  process.exit(2);
}
const { positionals } = parsed;
// Repeated flags keep their last value, except list flags.
const flags = Object.fromEntries(Object.entries(parsed.values).map(([k, v]) => [k, Array.isArray(v) ? (LIST_FLAGS.includes(k) ? v.join(",") : v.at(-1)) : v]));
if (positionals.length === 0 || flags.help === true) {
  console.log(ADMIN_HELP);
  process.exit(flags.help === true ? 0 : 2);
}

const gatewayUrl = typeof flags.url === "string" ? flags.url : process.env.SWITCHYARD_URL || DEFAULT_URL;

/**
 * The admin token: --token, else SWITCHYARD_ADMIN_TOKEN, else the file `npm start` writes in its data
 * folder: SWITCHYARD_DATA_DIR if set here, else the folder of the local stack serving `gatewayUrl`
 * (whatever SWITCHYARD_DATA_DIR it was started with; dev/stack-record.ts), else .data/dev.
 */
function adminToken(): string {
  if (typeof flags.token === "string" && flags.token !== "") return flags.token;
  if (process.env.SWITCHYARD_ADMIN_TOKEN) return process.env.SWITCHYARD_ADMIN_TOKEN;
  const dataDir = process.env.SWITCHYARD_DATA_DIR || readStackRecord(gatewayUrl) || join(ROOT, ".data", "dev");
  const file = join(dataDir, "admin-token");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  throw new AdminUsageError(`No admin token: pass --token, set SWITCHYARD_ADMIN_TOKEN, or start the local stack (npm start writes ${file}).`);
}

let api: AdminApi | null = null;
const opened: NodeDb[] = [];
let infra: InfraContext | null = null;

function infraContext(): InfraContext {
  if (infra) return infra;
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new AdminUsageError("Set DATABASE_URL to the gateway's Postgres (Neon) connection string.");
  const redisUrl = process.env.UPSTASH_REDIS_REST_URL;
  const redisToken = process.env.UPSTASH_REDIS_REST_TOKEN;
  const db = openDb(databaseUrl);
  opened.push(db);
  infra = {
    db: db.db,
    actor: process.env.SWITCHYARD_ADMIN_ACTOR ?? `cli:${process.env.USER ?? "unknown"}`,
    redis: redisUrl && redisToken ? new Redis({ url: redisUrl, token: redisToken, enableTelemetry: false }) : null,
    redisPrefix: process.env.REDIS_PREFIX ?? "sy:",
    nodeSecret: (nodeId, version) => {
      const master = process.env.NODE_SIGNING_SECRET;
      if (!master) throw new AdminUsageError("Set NODE_SIGNING_SECRET (the same value as the worker's secret) to derive node secrets.");
      return deriveNodeSecret(master, nodeId, version);
    },
  };
  return infra;
}

/** The `sky` on PATH, run from the repository root (the task's `workdir: .` is synced from there). */
function sky(): SkyCli | null {
  const path = findSky(process.env.PATH);
  return path === null ? null : skyCli(path, { cwd: ROOT, env: process.env });
}

try {
  await runAdminCommand(
    {
      api: () => (api ??= adminApi(gatewayUrl, adminToken)),
      sky,
      infra: infraContext,
      flags,
      print: (line) => console.log(line),
      warn: (line) => console.error(line),
      rewrite: process.stderr.isTTY === true ? (line) => void process.stderr.write(line === "" ? "\n" : `\r\x1b[2K${line}`) : undefined,
    },
    positionals,
  );
} catch (err) {
  if (err instanceof AdminUsageError) {
    console.error(err.message);
    process.exitCode = 2;
  } else if (err instanceof ApiFailure) {
    console.error(err.status > 0 ? `Error (${err.status}${err.code ? ` ${err.code}` : ""}): ${err.message}` : err.message);
    process.exitCode = 1;
  } else {
    console.error(err);
    process.exitCode = 1;
  }
} finally {
  for (const db of opened) await db.close();
}
