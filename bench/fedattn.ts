/**
 * The federated-attention section of `npm run bench` (issue 16): syncs through the real coordinator
 * (fedattn-sync.ts: the gateway on plain workerd with its Durable Objects) and, beside them, the
 * same aggregation in process (fedattn-compute.ts), so the network and Durable Object share of a
 * sync is visible next to the pure compute. 3 and 8 participants at 1, 8 and 32 MB per
 * contribution (float32 K and V shaped [32, tokens, 128]); `--quick`: 3 × 1 MB and 3 × 8 MB.
 *
 * `npx node bench/fedattn.ts [--quick] [--in-process]` runs this section alone (`--in-process`:
 * only the in-process table, no servers).
 */
import { parseArgs } from "node:util";
import { FEDATTN_CASES, FEDATTN_QUICK_CASES, runFedattnCompute, type ComputeRow } from "./fedattn-compute.ts";
import { runFedattnSync, type SyncRow } from "./fedattn-sync.ts";
import type { TargetCheck } from "./report.ts";
import { Teardown } from "./teardown.ts";
import type { SectionOptions } from "./lib/section.ts";

/** The section's results. */
export interface FedattnBenchResult {
  /** Through the gateway (empty when it did not run). */
  sync: SyncRow[];
  /** In process. */
  compute: ComputeRow[];
  /** Calls that failed or answered wrongly (the run fails). */
  errors: string[];
}

/** The section's options: the run's databases, host, mode, teardown and log. */
export type FedattnBenchOptions = SectionOptions;

/** Runs both halves: the gateway's first (its processes stop before the in-process timing), then in process. */
export async function runFedattnBench(opts: FedattnBenchOptions): Promise<FedattnBenchResult> {
  const cases = opts.quick ? FEDATTN_QUICK_CASES : FEDATTN_CASES;
  const { rows, errors } = await runFedattnSync({ ...opts, cases, syncs: opts.quick ? 5 : 10, warmup: opts.quick ? 1 : 2 });
  await opts.teardown.close();
  opts.log("Federated attention: the same aggregation in process…");
  return { sync: rows, compute: runFedattnCompute(cases, opts.quick ? 5 : 7), errors };
}

/** Issue 16's target: a whole sync of 3 participants × 8 MB under 100 ms, through the coordinator. */
export function fedattnTargets(r: FedattnBenchResult | null): TargetCheck[] {
  const row = r?.sync.find((s) => s.participants === 3 && s.mb === 8);
  const aggregate = row?.aggregateP50 ?? null;
  const whole = row?.syncP50 ?? null;
  return [
    {
      // The target: the aggregation latency per sync, as a participant sees its aggregate call.
      goal: "federated attention: aggregation per sync, 3 participants × 8 MB (the aggregate call through the coordinator, to the answer's last byte), p50 < 100 ms",
      measured: aggregate === null ? "not measured" : `${aggregate.toFixed(1)} ms (p90 ${row?.aggregateP90?.toFixed(1) ?? "-"} ms; gateway-timed ${row?.gatewayP50?.toFixed(0) ?? "-"} ms)`,
      met: aggregate === null ? null : aggregate < 100,
    },
    {
      // A stricter reading, reported beside it: the sync including the three 8 MB uploads, which moving bytes over loopback HTTP dominates here.
      goal: "federated attention: whole sync including the three 8 MB uploads (stricter reading), p50 < 100 ms",
      measured: whole === null ? "not measured" : `${whole.toFixed(1)} ms (p90 ${row?.syncP90?.toFixed(1) ?? "-"} ms; uploads ${row?.contributionsP50?.toFixed(1) ?? "-"} ms)`,
      met: whole === null ? null : whole < 100,
    },
  ];
}

const f = (v: number | null, digits = 1) => (v === null ? "-" : v.toFixed(digits));

/** The report's section. */
export function formatFedattn(r: FedattnBenchResult): string {
  const out = ["## Federated attention: one sync, through the coordinator and in process (ms)", ""];
  if (r.sync.length > 0) {
    out.push(
      "The gateway on plain workerd with its Durable Objects (in memory), Redis and Postgres next door. Per sync, every participant sends its float32 contribution (K and V shaped [32, tokens, 128], signed) at once, then one asks for the aggregate (no wait). " +
        "Whole sync: the first contribution sent to the aggregate's last byte, as a participant sees it. Contributions: until the last one is answered. Aggregate call: that request alone; gateway-timed: the gateway's own figure for it (`x-fedattn-sync-latency-ms`, route start to the session object's answer, without sending the answer back). Every answer is checked.",
      "",
    );
    out.push("| participants | MB per contribution | syncs | whole sync p50 | p90 | contributions p50 | aggregate call p50 | p90 | gateway-timed p50 |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const s of r.sync) out.push(`| ${s.participants} | ${s.mb} | ${s.syncs} | ${f(s.syncP50)} | ${f(s.syncP90)} | ${f(s.contributionsP50)} | ${f(s.aggregateP50)} | ${f(s.aggregateP90)} | ${f(s.gatewayP50, 0)} |`);
    out.push("");
  }
  out.push("In process on Node's V8, no servers (median; whole sync = decode every contribution, aggregate, encode the answer):", "");
  out.push("| participants | MB per contribution | runs | aggregate | whole sync |", "|---:|---:|---:|---:|---:|");
  for (const c of r.compute) out.push(`| ${c.participants} | ${c.mb} | ${c.runs} | ${f(c.aggregateP50)} | ${f(c.syncP50)} |`);
  if (r.errors.length > 0) out.push("", ...r.errors.map((e) => `- error: ${e}`));
  return out.join("\n");
}

// `npx node bench/fedattn.ts [--quick] [--in-process]`: this section alone.
if (import.meta.main) {
  const { values } = parseArgs({ options: { quick: { type: "boolean" }, "in-process": { type: "boolean" } } });
  const quick = values.quick === true;
  if (values["in-process"] === true) {
    const compute = runFedattnCompute(quick ? FEDATTN_QUICK_CASES : FEDATTN_CASES, quick ? 5 : 7);
    console.log(formatFedattn({ sync: [], compute, errors: [] }));
  } else {
    const teardown = new Teardown();
    const stop = () => void teardown.close().then(() => process.exit(130));
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    try {
      const result = await runFedattnBench({
        pgAdminUrl: process.env.PG_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres",
        redisUrl: process.env.REDIS_URL || "redis://127.0.0.1:6379",
        host: "127.0.0.1",
        quick,
        teardown,
        log: (line) => console.error(line),
      });
      const target = fedattnTargets(result)[0];
      console.log(`${formatFedattn(result)}\n\nTarget: ${target?.goal}: ${target?.measured} (${target?.met === null ? "-" : target?.met ? "met" : "not met"})`);
      if (result.errors.length > 0) process.exitCode = 1;
    } finally {
      await teardown.close();
    }
  }
}
