/**
 * Services of the workerd test run, started as a plain Node process by worker-global-setup.ts: a fresh Postgres database with the
 * migrations, the Upstash-REST and Neon-WebSocket adapters over the machine's Redis and Postgres, a
 * simulated engine behind a real backplane, a dead node for failover, and seeded tenants and keys.
 * It prints one `READY <json>` line with the worker's bindings and the seeded keys, and cleans up
 * (dropping its database) on SIGTERM.
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { startDaemon } from "../../backplane/src/daemon.ts";
import { parseConfig } from "../../backplane/src/config.ts";
import { startSimEngine } from "../../backplane/src/sim/index.ts";
import { deriveNodeSecret } from "../../schema/contracts/signing.ts";
import { migrateDb, openDb } from "../../dev/db.ts";
import { startNeonWsPipe } from "../../dev/neon-ws-pipe.ts";
import { freePort } from "../../dev/ports.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import { startUpstashRestAdapter } from "../../dev/upstash-rest.ts";
import type { WorkerTestContext } from "./context.ts";
import { deleteRedisPrefix, PG_ADMIN_URL, REDIS_URL, seedBudgetMarker, seedTestTenants, uniqueSuffix } from "./fixtures.ts";


async function main(): Promise<void> {
  const suffix = uniqueSuffix();
  const dbName = `sy_wtest_${suffix}`;
  const databaseUrl = await createDatabase(PG_ADMIN_URL, dbName);
  await migrateDb(databaseUrl);

  const token = randomBytes(16).toString("hex");
  const upstash = await startUpstashRestAdapter({ redisUrl: REDIS_URL, token, host: "127.0.0.1" });
  const pipe = await startNeonWsPipe({ host: "127.0.0.1" });
  const sim = await startSimEngine({ host: "127.0.0.1", port: 0, ttftMs: 5, interTokenMs: 2 });

  const masterSecret = randomBytes(32).toString("hex");
  const liveNodeId = "wtest-live";
  const backplane = await startDaemon(
    parseConfig({
      nodeId: liveNodeId,
      region: "local",
      secret: await deriveNodeSecret(masterSecret, liveNodeId, 1),
      port: 0,
      engines: [{ kind: "sim", url: sim.url }],
      // Engine-failure tests must get their answer fast and must not open the circuit for later tests.
      retryBackoffMs: "20,40",
      breakerFailures: "1000",
      logLevel: "error",
    }),
  );
  const backplaneUrl = backplane.url;
  // A second node that is not registered: tests register it by sending its heartbeats themselves.
  const hbSim = await startSimEngine({ host: "127.0.0.1", port: 0, ttftMs: 1, interTokenMs: 1, models: [{ name: "hb-model", kind: "generate", maxModelLen: 4096 }] });
  const hbNodeId = "wtest-hb";
  const hbBackplane = await startDaemon(
    parseConfig({
      nodeId: hbNodeId,
      region: "hb-region",
      secret: await deriveNodeSecret(masterSecret, hbNodeId, 1),
      port: 0,
      engines: [{ kind: "sim", url: hbSim.url }],
      logLevel: "error",
    }),
  );
  // Two nodes for the LoRA tests, not registered (the tests register them with signed heartbeats):
  // both serve `lora-base` and load adapters at runtime; the first also serves `lora-static` from the start.
  const loraSims = await Promise.all([
    startSimEngine({ host: "127.0.0.1", port: 0, ttftMs: 1, interTokenMs: 1, runtimeLora: true, models: [{ name: "lora-base", kind: "generate", maxModelLen: 4096 }], loras: [{ name: "lora-static", base: "lora-base", path: "/adapters/lora-static" }] }),
    startSimEngine({ host: "127.0.0.1", port: 0, ttftMs: 1, interTokenMs: 1, runtimeLora: true, models: [{ name: "lora-base", kind: "generate", maxModelLen: 4096 }] }),
  ]);
  const loraIds = ["wtest-lora-a", "wtest-lora-b"];
  const loraBackplanes = await Promise.all(
    loraSims.map(async (loraSim, i) =>
      startDaemon(
        parseConfig({
          nodeId: loraIds[i],
          region: "lora-region",
          secret: await deriveNodeSecret(masterSecret, loraIds[i] ?? "", 1),
          port: 0,
          engines: [{ kind: "sim", id: "sim-0", url: loraSim.url }],
          logLevel: "error",
        }),
      ),
    ),
  );
  const deadUrl = `http://127.0.0.1:${await freePort()}`;
  // A node without reported streams (an older backplane's answers): an engine the gateway reaches
  // directly, so the gateway taps its streams itself. It serves `legacy-model` only.
  const legacySim = await startSimEngine({ host: "127.0.0.1", port: 0, ttftMs: 1, interTokenMs: 1, models: [{ name: "legacy-model", kind: "generate", maxModelLen: 4096 }] });

  // Lets the workerd tests read how many database sessions the worker has opened.
  const stats = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ connections: pipe.connections() }));
  });
  await new Promise<void>((resolve) => stats.listen(0, "127.0.0.1", resolve));
  const statsUrl = `http://127.0.0.1:${(stats.address() as AddressInfo).port}`;

  // Takes every request and never answers: stands in for a Redis or database that hangs.
  const blackhole = createServer(() => {});
  await new Promise<void>((resolve) => blackhole.listen(0, "127.0.0.1", resolve));
  const blackholeUrl = `http://127.0.0.1:${(blackhole.address() as AddressInfo).port}`;

  const db = openDb(databaseUrl);
  const seeded = await seedTestTenants(db.db, [
    { id: liveNodeId, url: backplaneUrl, models: ["sim-llama-8b", "sim-embed"] },
    { id: "wtest-dead", url: deadUrl, models: ["sim-llama-8b", "sim-embed"] },
    { id: "wtest-legacy", url: legacySim.url, models: ["legacy-model"] },
  ]);
  await db.close();

  const adminToken = randomBytes(32).toString("hex");
  const context: WorkerTestContext = {
    bindings: {
    ADMIN_TOKEN: adminToken,
    STRIPE_WEBHOOK_SECRET: `whsec_${randomBytes(24).toString("hex")}`,
    DASHBOARD_SECRET: randomBytes(32).toString("hex"),
    DATABASE_URL: databaseUrl,
    UPSTASH_REDIS_REST_URL: upstash.url,
    UPSTASH_REDIS_REST_TOKEN: token,
    NODE_SIGNING_SECRET: masterSecret,
    NEON_WS_PROXY: pipe.wsProxy,
    REDIS_PREFIX: `sy:wtest:${suffix}:`,
    KEY_CACHE_ISOLATE_SECONDS: "1",
    ROUTING_CACHE_ISOLATE_SECONDS: "1",
    UPSTREAM_CONNECT_TIMEOUT_MS: "5000",
    // The built-in council asks the model every live test node serves (the catalogue's first chat model by id is a test fixture).
    COUNCIL_DEFAULT_MODEL: "sim-llama-8b",
    },
    adminToken,
    keys: seeded,
    tenantId: seeded.tenantId,
    otherTenantId: seeded.otherTenantId,
    liveNodeId,
    liveBackplaneUrl: backplaneUrl,
    statsUrl,
    blackholeUrl,
    hbNode: { id: hbNodeId, url: hbBackplane.url },
    loraNodes: loraBackplanes.map((b, i) => ({ id: loraIds[i] ?? "", url: b.url, engineUrl: loraSims[i]?.url ?? "" })),
  };
  // A deployment's first scheduled run seeds the budget counters (worker/src/limits/budget-seed.ts);
  // the tests start from seeded counters, except the one that takes the marker away.
  await seedBudgetMarker(`sy:wtest:${suffix}:`);
  process.stdout.write(`READY ${JSON.stringify(context)}\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    stats.close();
    blackhole.closeAllConnections();
    blackhole.close();
    await backplane.close();
    await hbBackplane.close();
    for (const b of loraBackplanes) await b.close();
    for (const s of loraSims) await s.close();
    await sim.close();
    await hbSim.close();
    await legacySim.close();
    await pipe.close();
    await upstash.close();
    await dropDatabase(PG_ADMIN_URL, dbName);
    await deleteRedisPrefix(`sy:wtest:${suffix}:`);
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
