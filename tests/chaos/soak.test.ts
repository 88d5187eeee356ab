/**
 * Soak: the local stack as `npm start` runs it (embedded Postgres behind the Neon pipe), one region and
 * three regions, under mixed OpenAI-client traffic and admin calls for SOAK_MINUTES each (default 15).
 * Every SOAK_SAMPLE_SECONDS it samples the Postgres connection count and the processes' memory; it
 * asserts the count never passes SOAK_MAX_PG_CONNECTIONS and that no call failed. Callers send SOAK_RPM
 * requests a minute in all (default 240, under the demo key's 300). `npm run test:chaos`.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadTopology } from "../../dev/topology.ts";
import { ROOT, type Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminLoop, callerLoop, treeRssMb, type Failure, type Sent } from "./soak-traffic.ts";

const MINUTES = Number(process.env.SOAK_MINUTES || 15);
const SAMPLE_MS = Number(process.env.SOAK_SAMPLE_SECONDS || 5) * 1000;
const MAX_PG_CONNECTIONS = Number(process.env.SOAK_MAX_PG_CONNECTIONS || 12);
const CALLERS = Number(process.env.SOAK_CALLERS || 3);
// The demo key's plan allows 300 requests a minute; the soak stays under it (a 429 would count as a failure).
const RPM = Number(process.env.SOAK_RPM || 240);
// Every cron tick (once a minute locally) must happen during the run, so it runs the job at this pace too.
const CRON_EVERY_MS = 60_000;

let running: TestStack | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

interface Sample {
  t: number;
  pg: number;
  rssMb: Record<string, number>;
}

async function soak(name: string, started: TestStack, locations: (string | undefined)[]): Promise<void> {
  const { stack } = started;
  const until = Date.now() + MINUTES * 60_000;
  const sent: Sent = {};
  const failures: Failure[] = [];
  const samples: Sample[] = [];
  const began = Date.now();
  const sample = async () => {
    const roots: Record<string, number | undefined> = {};
    for (const child of stack.children) roots[child.name] = child.process.pid;
    // The test process alone (its children are counted under their own names).
    const self = { "test process (PGlite, pipe, Redis adapter)": Math.round(process.memoryUsage().rss / 2 ** 20) };
    samples.push({ t: Math.round((Date.now() - began) / 1000), pg: await stack.postgresConnections(), rssMb: { ...self, ...treeRssMb(roots) } });
  };
  await sample();
  const sampler = setInterval(() => void sample().catch((err: unknown) => failures.push({ at: new Date().toISOString(), what: "sample", error: String(err) })), SAMPLE_MS);
  const cron = setInterval(() => void stack.runScheduled().catch((err: unknown) => failures.push({ at: new Date().toISOString(), what: "cron", error: String(err) })), CRON_EVERY_MS);
  try {
    await Promise.all([
      ...Array.from({ length: CALLERS }, (_, i) => callerLoop(stack, until, (60_000 * CALLERS) / RPM, sent, failures, locations[i % locations.length])),
      adminLoop(stack, until, 1_000, sent, failures),
    ]);
  } finally {
    clearInterval(sampler);
    clearInterval(cron);
  }
  // After the traffic, the connections must drain back to the stack's own few.
  await new Promise((r) => setTimeout(r, 2_000));
  await sample();
  // And every engine slot is free again: nothing runs on any engine, nothing is in flight on any
  // backplane (streams cancelled before or after their first byte included).
  const busy = await eventuallyIdle(stack.nodes);

  const peak = Math.max(...samples.map((s) => s.pg));
  const first = samples[0];
  const last = samples.at(-1);
  const report = {
    topology: name,
    minutes: MINUTES,
    requests: sent,
    total: Object.values(sent).reduce((a, b) => a + b, 0),
    failures: failures.length,
    failuresByKind: Object.fromEntries(
      [...new Set(failures.map((f) => `${f.what}: ${f.error.slice(0, 90)}`))].map((k) => [k, failures.filter((f) => `${f.what}: ${f.error.slice(0, 90)}` === k).length]),
    ),
    postgresConnections: { peak, last: last?.pg, samples: samples.length },
    rssMb: { first: first?.rssMb, last: last?.rssMb },
  };
  console.log(`soak ${name}: ${JSON.stringify(report, null, 2)}`);
  if (failures.length > 0) console.log(`first failures: ${JSON.stringify(failures.slice(0, 5), null, 2)}`);
  expect(failures).toEqual([]);
  expect(peak).toBeLessThanOrEqual(MAX_PG_CONNECTIONS);
  expect(report.total).toBeGreaterThan(0);
  expect(busy).toEqual([]);
}

/** Waits up to 15 s for every node to report nothing running; returns what still runs then. */
async function eventuallyIdle(nodes: Stack["nodes"]): Promise<string[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const busy: string[] = [];
    for (const node of nodes) {
      const engine = await (await fetch(`${node.simUrl}/metrics`)).text();
      for (const m of engine.matchAll(/^vllm:num_requests_running\{([^}]*)\} (\S+)$/gm)) if (Number(m[2]) !== 0) busy.push(`${node.id} engine ${m[1] ?? ""}: ${m[2] ?? ""} running`);
      const backplane = await (await fetch(`${node.backplaneUrl}/metrics`)).text();
      for (const m of backplane.matchAll(/^switchyard_backplane_in_flight\{([^}]*)\} (\S+)$/gm)) if (Number(m[2]) !== 0) busy.push(`${node.id} backplane ${m[1] ?? ""}: ${m[2] ?? ""} in flight`);
    }
    if (busy.length === 0 || Date.now() > deadline) return busy;
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe(`soak (${MINUTES} min per topology)`, () => {
  it("one region: mixed traffic and admin calls, no errors, Postgres connections stay bounded", async () => {
    running = await startTestStack("soak1", { embeddedPostgres: true });
    await soak("one region", running, [undefined]);
  });

  it("three regions: mixed traffic from every region and admin calls, no errors, Postgres connections stay bounded", async () => {
    const topology = loadTopology(join(ROOT, "dev/topologies/three-regions.json"));
    running = await startTestStack("soak3", { embeddedPostgres: true, topology });
    await soak("three regions", running, topology.regions.map((r) => `${r.latitude},${r.longitude}`));
  });
});
