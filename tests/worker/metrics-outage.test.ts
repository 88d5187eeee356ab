import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, inject, it } from "vitest";
import worker from "../../worker/src/index.ts";
import { clearIsolateCaches } from "../../worker/src/platform/hot-state.ts";

// GET /admin/metrics while a dependency is down (docs/operations.md#metrics): the scrape still
// answers 200 with what it could read, and switchyard_dependency_up says what it could not, so the
// alert for the outage can fire during the outage.
const DEAD = "http://127.0.0.1:9";

async function scrape(bindings: typeof env): Promise<{ status: number; text: string }> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request("http://gateway.test/admin/metrics", { headers: { authorization: `Bearer ${inject("adminToken")}` } }), bindings, ctx);
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  return { status: res.status, text };
}

describe("GET /admin/metrics during outages", () => {
  it("reports both dependencies up, with the counters, outboxes and fleet, when all is well", async () => {
    const { status, text } = await scrape(env);
    expect(status).toBe(200);
    expect(text).toContain('switchyard_dependency_up{dependency="redis"} 1');
    expect(text).toContain('switchyard_dependency_up{dependency="postgres"} 1');
    expect(text).toContain("# TYPE switchyard_requests_total counter");
    expect(text).toContain('switchyard_outbox_backlog{queue="usage"}');
    expect(text).toContain("# TYPE switchyard_node_up gauge");
  });

  it("answers 200 without Redis: redis down, the counters and outboxes left out, the node registry still there", async () => {
    clearIsolateCaches();
    const { status, text } = await scrape({ ...env, UPSTASH_REDIS_REST_URL: DEAD });
    expect(status).toBe(200);
    expect(text).toContain('switchyard_dependency_up{dependency="redis"} 0');
    expect(text).toContain('switchyard_dependency_up{dependency="postgres"} 1');
    expect(text).not.toContain("switchyard_outbox_backlog{");
    expect(text).toContain("# TYPE switchyard_node_up gauge");
  });

  it("answers 200 without Postgres: postgres down, the fleet gauges left out, the counters still there", async () => {
    clearIsolateCaches();
    const { status, text } = await scrape({ ...env, DATABASE_URL: "postgres://nobody@127.0.0.1:9/none" });
    expect(status).toBe(200);
    expect(text).toContain('switchyard_dependency_up{dependency="postgres"} 0');
    expect(text).toContain('switchyard_dependency_up{dependency="redis"} 1');
    expect(text).not.toContain("# TYPE switchyard_node_up gauge");
    expect(text).toContain("# TYPE switchyard_requests_total counter");
  });
});
