/**
 * The operator's Prometheus and Grafana files (ops/, docs/operations.md): the alert rules pass
 * `promtool check rules` and their unit tests (`promtool test rules`), the scrape config is valid,
 * and every metric the rules and the dashboard use is one the gateway or the backplane exposes
 * (so a rename cannot leave an alert or a panel silently empty). promtool comes from Debian's
 * `prometheus` package (.ci/run installs it); without it the promtool checks skip, saying so.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { COUNTERS, FLEET_GAUGES, HISTOGRAMS, OUTBOX_GAUGES } from "../../worker/src/platform/metric-names.ts";
import { createBackplaneMetrics } from "../../backplane/src/metrics/backplane.ts";

const ROOT = join(import.meta.dirname, "../..");
const OPS = join(ROOT, "ops");
const PROMTOOL = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((p) => existsSync(p));
const run = promisify(execFile);

async function promtool(args: string[]): Promise<{ code: number; out: string }> {
  if (!PROMTOOL) throw new Error("no promtool");
  return run(PROMTOOL, args, { cwd: join(OPS, "prometheus"), timeout: 60_000 }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? 1, out: `${err.stdout ?? ""}${err.stderr ?? ""}` }),
  );
}

/** Every metric a backplane exposes (its registry, empty pool). */
function backplaneNames(): string[] {
  const metrics = createBackplaneMetrics({ reports: () => [] } as unknown as Parameters<typeof createBackplaneMetrics>[0], () => false);
  return metrics.registry
    .render()
    .split("\n")
    .filter((l) => l.startsWith("# TYPE "))
    .map((l) => l.split(" ")[2] ?? "");
}

/** Series names a PromQL expression reads (identifiers starting with switchyard_, without histogram suffixes). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(switchyard_[a-z0-9_]+)/g)].map((m) => (m[1] ?? "").replace(/_(bucket|sum|count)$/, ""));
}

const known = new Set([...Object.keys(COUNTERS), ...Object.keys(HISTOGRAMS), ...Object.keys(FLEET_GAUGES), ...OUTBOX_GAUGES, "switchyard_dependency_up", ...backplaneNames()]);

describe("ops/prometheus", () => {
  it("alert rules pass promtool check rules", async (ctx) => {
    if (!PROMTOOL) return ctx.skip("promtool is not installed (Debian: apt-get install prometheus)");
    const r = await promtool(["check", "rules", "switchyard-alerts.yml"]);
    expect(r.out).toContain("SUCCESS: 10 rules found");
    expect(r.code).toBe(0);
  });

  it("alert rules fire and stay quiet as their unit tests say (promtool test rules)", async (ctx) => {
    if (!PROMTOOL) return ctx.skip("promtool is not installed (Debian: apt-get install prometheus)");
    const r = await promtool(["test", "rules", "switchyard-alerts.test.yml"]);
    expect(r.out).toContain("SUCCESS");
    expect(r.code).toBe(0);
  });

  it("the scrape config is valid (promtool check config --syntax-only)", async (ctx) => {
    if (!PROMTOOL) return ctx.skip("promtool is not installed (Debian: apt-get install prometheus)");
    const r = await promtool(["check", "config", "--syntax-only", "prometheus.yml"]);
    expect(r.code).toBe(0);
  });

  it("every alert reads metrics the gateway or the backplane exposes, and names a runbook that exists", () => {
    const text = readFileSync(join(OPS, "prometheus/switchyard-alerts.yml"), "utf8");
    const exprs = [...text.matchAll(/expr: (\|\n((?: {10}.*\n)+)|.*)/g)].map((m) => m[2] ?? m[1] ?? "");
    expect(exprs.length).toBe(10);
    for (const name of exprs.flatMap(metricsIn)) expect(known, `alert metric ${name}`).toContain(name);
    // A runbook named from the dependency label exists for each dependency the gateway reports.
    const runbooks = [...text.matchAll(/runbook: (?:"([^"]+)"|(\S+))/g)].flatMap(([, quoted, plain]) => {
      const path = quoted ?? plain ?? "";
      return path.includes("{{ $labels.dependency }}") ? ["redis", "postgres"].map((d) => path.replace("{{ $labels.dependency }}", d)) : [path];
    });
    expect(runbooks.length).toBeGreaterThanOrEqual(10);
    for (const path of runbooks) expect(existsSync(join(ROOT, path)), `runbook ${path}`).toBe(true);
  });
});

describe("ops/grafana", () => {
  interface Panel {
    title: string;
    type: string;
    targets?: { expr: string }[];
    panels?: Panel[];
  }
  const dashboard = JSON.parse(readFileSync(join(OPS, "grafana/switchyard.json"), "utf8")) as { title: string; uid: string; panels: Panel[]; templating: unknown };
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== "row");

  it("has the panels operators need, each with a query", () => {
    const titles = panels.map((p) => p.title);
    for (const wanted of [
      "Availability (target 99.5 %)",
      "p95 latency by route",
      "p95 time to first token by route",
      "Requests per minute",
      "Tokens per second",
      "GPU utilisation per node",
      "KV cache use per node",
      "Healthy nodes per region",
      "Refusals by layer and reason",
      "Usage and audit backlog",
      "Billing exports and reconciliation",
    ]) {
      expect(titles, wanted).toContain(wanted);
    }
    for (const p of panels) expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
  });

  it("queries only metrics the gateway or the backplane exposes", () => {
    const names = panels.flatMap((p) => (p.targets ?? []).flatMap((t) => metricsIn(t.expr)));
    expect(names.length).toBeGreaterThan(10);
    for (const name of names) expect(known, `panel metric ${name}`).toContain(name);
  });
});
