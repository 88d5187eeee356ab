/**
 * `node launch`, `node launches`, `node terminate` and `provisioner run`: SkyPilot-launched nodes
 * (docs/provisioning.md). The gateway records launches and hands out their task YAML; this host (the
 * operator's control host, where `sky` is installed and has cloud credentials) claims them, runs
 * `sky launch` / `sky down` and reports each outcome back through the admin API.
 */
import type { LaunchJson } from "../src/provisioning/launches.ts";
import { table } from "./format.ts";
import type { SkyCli } from "./sky.ts";
import { AdminUsageError, arg, flag, intFlag, need, output, type Command, type CommandContext } from "./context.ts";
import type { AdminApi } from "./client.ts";
import { ApiFailure } from "./client.ts";

const enc = encodeURIComponent;
/** Launches (and teardowns) run side by side per provisioner pass. */
const PARALLEL = 4;
/** The provisioner's default pause between passes. */
const DEFAULT_INTERVAL_MS = 30_000;
/** What the gateway answers to a claim: the launch and its task YAML (with the node's secret). */
type Claimed = LaunchJson & { task_yaml: string };

const NO_SKY =
  "`sky` is not on PATH, so nothing was launched from here: the launches are pending. Install SkyPilot on the control host (pip install skypilot, then sky check), and run `npm run admin -- provisioner run` there: it launches pending nodes and tears down terminated ones.";

/** `--spot`, `--spot true` or `--spot false` (admin.ts turns a bare `--spot` into `true`). */
function spotFlag(ctx: CommandContext): boolean {
  const raw = flag(ctx, "spot");
  if (raw === undefined || raw === "false") return false;
  if (raw === "true") return true;
  throw new AdminUsageError(`--spot takes true or false (or nothing), got "${raw}".`);
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      if (item !== undefined) await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Claims a launch; null when another provisioner has it (409). */
async function claim(api: AdminApi, id: string): Promise<Claimed | null> {
  try {
    return await api.request<Claimed>("POST", `/nodes/launches/${enc(id)}/claim`);
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 409) return null;
    throw err;
  }
}

function report(api: AdminApi, id: string, state: string, error?: string): Promise<LaunchJson> {
  return api.request<LaunchJson>("POST", `/nodes/launches/${enc(id)}/state`, error === undefined ? { state } : { state, error });
}

/** What a pass did, per launch. */
interface Outcome {
  launch: string;
  node: string;
  action: "launch" | "down";
  state: string;
  error: string | null;
}

/** Claims one pending launch, runs `sky launch`, and reports registering or (after `sky down`) failed. */
async function launchOne(api: AdminApi, sky: SkyCli, id: string, say: (line: string) => void): Promise<Outcome | null> {
  const claimed = await claim(api, id);
  if (!claimed) return null;
  say(`${claimed.node_id}: sky launch -c ${claimed.cluster} (${claimed.provider} ${claimed.region}, ${claimed.gpu}${claimed.spot ? ", spot" : ""})`);
  const launched = await sky.launch(claimed.cluster, claimed.task_yaml);
  if (launched.ok) {
    const after = await report(api, id, "registering");
    return { launch: id, node: claimed.node_id, action: "launch", state: after.state, error: null };
  }
  // A failed launch may leave a cluster behind (setup failed on a VM that is up): take it down.
  const down = await sky.down(claimed.cluster);
  const error = `sky launch failed (exit ${launched.code ?? "none"}): ${launched.output}${down.ok ? "" : `\nsky down afterwards failed too (exit ${down.code ?? "none"}): ${down.output}`}`.slice(-4000);
  const after = await report(api, id, "failed", error);
  return { launch: id, node: claimed.node_id, action: "launch", state: after.state, error };
}

/** Claims one terminating launch, runs `sky down`, and reports terminated (or terminating again, to retry). */
async function downOne(api: AdminApi, sky: SkyCli, id: string, say: (line: string) => void): Promise<Outcome | null> {
  const claimed = await claim(api, id);
  if (!claimed) return null;
  say(`${claimed.node_id}: sky down ${claimed.cluster}`);
  const down = await sky.down(claimed.cluster);
  if (down.ok) {
    const after = await report(api, id, "terminated");
    return { launch: id, node: claimed.node_id, action: "down", state: after.state, error: after.error };
  }
  const error = `sky down failed (exit ${down.code ?? "none"}): ${down.output}`.slice(-4000);
  const after = await report(api, id, "terminating", error);
  return { launch: id, node: claimed.node_id, action: "down", state: after.state, error };
}

async function launchesIn(api: AdminApi, state: string): Promise<LaunchJson[]> {
  const body = await api.request<{ data: LaunchJson[] }>("GET", `/nodes/launches?state=${state}&limit=500`);
  return body.data;
}

/** One provisioner pass: every pending launch launched, every terminating one taken down. */
export async function provisionOnce(api: AdminApi, sky: SkyCli, say: (line: string) => void): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const [pending, terminating] = await Promise.all([launchesIn(api, "pending"), launchesIn(api, "terminating")]);
  const jobs = [...pending.map((l) => () => launchOne(api, sky, l.id, say)), ...terminating.map((l) => () => downOne(api, sky, l.id, say))];
  await eachLimited(jobs, PARALLEL, async (job) => {
    try {
      const outcome = await job();
      if (outcome) outcomes.push(outcome);
    } catch (err) {
      // The API failed mid-way: the launch keeps its state and the lease lets a later pass retry.
      say(`error: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  return outcomes;
}

function outcomeLine(o: Outcome): string {
  return `${o.node}: ${o.action === "launch" ? "launched" : "taken down"} → ${o.state}${o.error ? `\n  ${o.error.split("\n").join("\n  ")}` : ""}`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

const LAUNCH_HEADERS = ["NODE", "STATE", "PROVIDER", "REGION", "MODEL", "GPU", "SPOT", "REASON", "CREATED", "ERROR"];
const launchRow = (l: LaunchJson) => [l.node_id, l.state, l.provider, l.region, l.model, l.gpu, l.spot ? "yes" : "no", l.reason, l.created_at, l.error ? l.error.split("\n")[0] : ""];

function requireSky(ctx: CommandContext): SkyCli {
  const sky = ctx.sky?.() ?? null;
  if (!sky) throw new AdminUsageError(NO_SKY.replace("so nothing was launched from here: the launches are pending. ", ""));
  return sky;
}

/** Provisioning commands. */
export const provisioningCommands: Record<string, Command> = {
  "node launch": async (ctx) => {
    const body = {
      provider: need(ctx, "provider"),
      region: need(ctx, "region"),
      model: need(ctx, "model"),
      gpu: need(ctx, "gpu"),
      count: intFlag(ctx, "count") ?? 1,
      spot: spotFlag(ctx),
    };
    if (ctx.flags["dry-run"] === true) {
      const res = await ctx.api().request<{ data: { node_id: string; task_yaml: string }[] }>("POST", "/nodes/launch", { ...body, dry_run: true });
      output(ctx, res, () => ctx.print(res.data.map((t) => `# ${t.node_id}\n${t.task_yaml}`).join("---\n")));
      return;
    }
    const res = await ctx.api().request<{ data: Claimed[]; message: string }>("POST", "/nodes/launch", body);
    const sky = ctx.sky?.() ?? null;
    if (!sky) {
      output(ctx, { ...res, sky: null }, () => {
        ctx.print(res.data.map((t) => `# ${t.node_id} (launch ${t.id}, pending)\n${t.task_yaml}`).join("---\n"));
        ctx.warn(NO_SKY);
      });
      return;
    }
    const outcomes: Outcome[] = [];
    await eachLimited(res.data, PARALLEL, async (l) => {
      const outcome = await launchOne(ctx.api(), sky, l.id, ctx.warn);
      if (outcome) outcomes.push(outcome);
      else ctx.warn(`${l.node_id}: already claimed by a provisioner`);
    });
    output(ctx, { object: "list", data: outcomes }, () => {
      for (const o of outcomes) ctx.print(outcomeLine(o));
      if (outcomes.some((o) => o.state === "registering")) {
        ctx.print("Registering: each node shows as serving in `node list` once its first ready heartbeat is in (the scheduled job checks every minute).");
      }
    });
    if (outcomes.some((o) => o.state === "failed")) process.exitCode = 1;
  },
  "node launches": async (ctx) => {
    const params = new URLSearchParams();
    for (const name of ["state", "model", "region"]) {
      const value = flag(ctx, name);
      if (value !== undefined) params.set(name, value);
    }
    const limit = intFlag(ctx, "limit");
    if (limit !== undefined) params.set("limit", String(limit));
    const body = await ctx.api().request<{ data: LaunchJson[] }>("GET", `/nodes/launches${params.size > 0 ? `?${params.toString()}` : ""}`);
    output(ctx, body, () => ctx.print(body.data.length === 0 ? "(none)" : table(LAUNCH_HEADERS, body.data.map(launchRow))));
  },
  "node terminate": async (ctx) => {
    const id = arg(ctx, 0, "the node id");
    const reason = flag(ctx, "reason");
    const body = await ctx.api().request<LaunchJson>("POST", `/nodes/${enc(id)}/terminate`, reason === undefined ? {} : { reason });
    output(ctx, body, () => {
      ctx.print(`${body.node_id}: ${body.state}`);
      if (body.state === "draining") ctx.print("No new requests go to it; once nothing is in flight it becomes terminating and `provisioner run` takes it down with sky down.");
    });
  },
  "provisioner run": async (ctx) => {
    const sky = requireSky(ctx);
    const once = ctx.flags.once === true;
    const intervalMs = intFlag(ctx, "interval-ms") ?? DEFAULT_INTERVAL_MS;
    if (intervalMs < 1_000) throw new AdminUsageError("--interval-ms must be at least 1000.");
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      do {
        const outcomes = await provisionOnce(ctx.api(), sky, ctx.warn);
        for (const o of outcomes) ctx.print(outcomeLine(o));
        if (once || stop.signal.aborted) break;
        await sleep(intervalMs, stop.signal);
      } while (!stop.signal.aborted);
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  },
};
