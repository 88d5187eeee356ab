import { env } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { Redis } from "@upstash/redis/cloudflare";
import { afterEach, describe, expect, it } from "vitest";
import type { KeyIdentity } from "../../worker/src/auth/identity.ts";
import { ApiError } from "../../worker/src/errors.ts";
import { admit } from "../../worker/src/limits/admission.ts";
import type { RoutingSnapshot } from "../../worker/src/routing/snapshot.ts";
import { settingsFrom } from "../../worker/src/settings.ts";
import { admin } from "./admin-helpers.ts";

// Nothing listens on port 9 here: a Redis that is down, answering at once with a connection error.
const deadRedis = new Redis({ url: "http://127.0.0.1:9", token: "x", retry: { retries: 0, backoff: () => 0 }, enableTelemetry: false });

const identity: KeyIdentity = {
  keyId: "key_metrics",
  keyPrefix: "sk-sy-metric",
  tenantId: "ten_metrics",
  environmentId: "env_metrics",
  tenantStatus: "active",
  scopes: ["chat"],
  allowedModels: null,
  expiresAt: null,
  revoked: false,
  pinnedRegion: null,
  overrides: {},
  budgets: [],
};
const snapshot: RoutingSnapshot = { builtAt: 0, models: {}, nodes: [], globalLimits: null };
const costs = { max: { tokens: 100, spend: 10, requests: 1 }, rateTokens: 50 };
// What admit() hands to waitUntil (lease refills and returns), awaited at the end of each test.
const background: Promise<unknown>[] = [];
const waitUntil = (p: Promise<unknown>) => void background.push(p.catch(() => null));

afterEach(async () => {
  await Promise.all(background.splice(0));
});

async function metricsText(): Promise<string> {
  const res = await exports.default.fetch(new Request("http://gateway.test/admin/metrics", { headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` } }));
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return res.text();
}

function value(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe("limits when Redis is down", () => {
  it("admit the request (fail open), log it, and count it in the metrics", async () => {
    const before = await metricsText();
    const logs: string[] = [];
    const admission = await admit({ redis: deadRedis, settings: settingsFrom(env), log: (event) => logs.push(event), requestId: "req_metrics", waitUntil }, identity, snapshot, costs);
    await admission.finish(null);
    expect(logs).toContain("limits_fail_open");
    const after = await metricsText();
    expect(value(after, 'switchyard_limits_fail_open_total{check="rate"}')).toBe(value(before, 'switchyard_limits_fail_open_total{check="rate"}') + 1);
    expect(value(after, 'switchyard_limits_fail_open_total{check="concurrency"}')).toBe(value(before, 'switchyard_limits_fail_open_total{check="concurrency"}') + 1);
  });

  it("refuse a request with a budget (fail closed) with a 503 naming the cause, and count it", async () => {
    const before = await metricsText();
    const withBudget: KeyIdentity = { ...identity, budgets: [{ id: "bud_m", scope: "key", scopeId: "key_metrics", kind: "tokens", period: "day", amount: 1000 }] };
    const refused = await admit({ redis: deadRedis, settings: settingsFrom(env), log: () => {}, requestId: "req_m2", waitUntil }, withBudget, snapshot, costs).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(503);
    expect((refused as ApiError).code).toBe("dependency_unavailable");
    const after = await metricsText();
    expect(value(after, "switchyard_budgets_fail_closed_total")).toBe(value(before, "switchyard_budgets_fail_closed_total") + 1);
  });

  it("serve metrics to the operator only", async () => {
    const res = await admin("GET", "/metrics", undefined, "not-the-token");
    expect(res.status).toBe(401);
  });
});
