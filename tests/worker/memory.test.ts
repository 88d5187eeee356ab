/**
 * Memory trails (docs/memory.md) inside workerd, against the real Postgres: breadcrumbs that start and
 * warm trails, the hot list, decay, cooling (the hourly job and the operator's endpoint), tenant
 * isolation, bad input and Postgres being away.
 */
import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from "cloudflare:test";
import { eq, sql } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { memoryBreadcrumbs, memoryTrails } from "../../schema/tables/index.ts";
import worker from "../../worker/src/index.ts";
import { RECONCILE_CRON } from "../../worker/src/jobs/scheduled.ts";
import { leaveBreadcrumb } from "../../worker/src/memory/trails.ts";
import type { AdminTrailJson, BreadcrumbJson, CoolingJson, HotTrailsJson, TrailDetailJson } from "../../worker/src/memory/wire.ts";
import { admin, expectStatus, sandbox, unique, type ErrorBody, type List, type Sandbox } from "./admin-helpers.ts";
import { gateway, query } from "./helpers.ts";

/** A response with its parsed JSON body. */
interface Answer<T> {
  status: number;
  headers: Headers;
  body: T;
}

async function json<T>(res: Response): Promise<Answer<T>> {
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

function breadcrumb<T = BreadcrumbJson>(key: string, body: unknown): Promise<Answer<T>> {
  return gateway("/v1/memory/breadcrumb", { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body), key }).then((r) => json<T>(r));
}

function hot<T = HotTrailsJson>(key: string, params = ""): Promise<Answer<T>> {
  return gateway(`/v1/memory/trails/hot${params}`, { key }).then((r) => json<T>(r));
}

function trail<T = TrailDetailJson>(key: string, id: string): Promise<Answer<T>> {
  return gateway(`/v1/memory/trails/${encodeURIComponent(id)}`, { key }).then((r) => json<T>(r));
}

/** Moves a trail's temperature (and optionally its breadcrumbs) into the past, as if time had passed. */
async function age(trailId: string, hours: { temperature: number; breadcrumbs?: number }): Promise<void> {
  await query(async (db) => {
    await db
      .update(memoryTrails)
      .set({ temperatureAt: sql`now() - ${hours.temperature}::float8 * interval '1 hour'` })
      .where(eq(memoryTrails.id, trailId));
    if (hours.breadcrumbs !== undefined) {
      const shift = hours.breadcrumbs;
      await db
        .update(memoryBreadcrumbs)
        .set({ at: sql`now() - ${shift}::float8 * interval '1 hour'` })
        .where(eq(memoryBreadcrumbs.trailId, trailId));
      await db
        .update(memoryTrails)
        .set({ createdAt: sql`now() - ${shift}::float8 * interval '1 hour'` })
        .where(eq(memoryTrails.id, trailId));
    }
  });
}

async function storedTrail(id: string) {
  const [row] = await query((db) => db.select().from(memoryTrails).where(eq(memoryTrails.id, id)));
  return row;
}

let a: Sandbox;
let b: Sandbox;

beforeAll(async () => {
  [a, b] = await Promise.all([sandbox(unique("memory-a")), sandbox(unique("memory-b"))]);
});

describe("leaving breadcrumbs", () => {
  it("starts a new trail at 85 and answers with its id, source, null target and the breadcrumb's id", async () => {
    const source = unique("agent");
    const res = await breadcrumb(a.key, { source, content: "the deploy script needs a --dry-run flag" });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ object: "memory.breadcrumb", source, target: null, temperature: 85 });
    expect(res.body.trail_id).toMatch(/^trl_[0-9a-f]{20}$/);
    expect(res.body.breadcrumb_id).toMatch(/^bc_[0-9a-f]{20}$/);
    const stored = await storedTrail(res.body.trail_id);
    expect(stored).toMatchObject({ tenantId: a.tenantId, source, target: "", temperature: 85, breadcrumbs: 1 });
  });

  it("warms the same trail (same source and target) by 10, capped at 100, instead of starting another", async () => {
    const source = unique("agent");
    const first = await breadcrumb(a.key, { source, target: "billing-service", content: "one" });
    const second = await breadcrumb(a.key, { source, target: "billing-service", content: "two" });
    expect(second.status).toBe(200);
    expect(second.body.trail_id).toBe(first.body.trail_id);
    expect(second.body.target).toBe("billing-service");
    expect(second.body.temperature).toBe(95);
    const third = await breadcrumb(a.key, { source, target: "billing-service", content: "three" });
    expect(third.body.temperature).toBe(100);
    const detail = await trail(a.key, first.body.trail_id);
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({ object: "memory.trail", id: first.body.trail_id, source, target: "billing-service", temperature: 100, breadcrumbs: 3 });
    // Newest first.
    expect(detail.body.recent_breadcrumbs.map((c) => c.content)).toEqual(["three", "two", "one"]);
    expect(detail.body.recent_breadcrumbs[0]?.id).toBe(third.body.breadcrumb_id);
  });

  it("warms a cooled trail from its decayed temperature: 85 a day ago with a 24 h half-life is 42.5, plus 10", async () => {
    const source = unique("agent");
    const first = await breadcrumb(a.key, { source, content: "first" });
    await age(first.body.trail_id, { temperature: 24 });
    const warmed = await breadcrumb(a.key, { source, content: "again" });
    expect(warmed.body.trail_id).toBe(first.body.trail_id);
    expect(warmed.body.temperature).toBeCloseTo(52.5, 1);
  });

  it("keeps a different target (or none) on a different trail", async () => {
    const source = unique("agent");
    const none = await breadcrumb(a.key, { source, content: "x" });
    const one = await breadcrumb(a.key, { source, target: "db", content: "x" });
    const other = await breadcrumb(a.key, { source, target: "cache", content: "x" });
    const nullTarget = await breadcrumb(a.key, { source, target: null, content: "y" });
    expect(new Set([none.body.trail_id, one.body.trail_id, other.body.trail_id]).size).toBe(3);
    expect([one.body.temperature, other.body.temperature]).toEqual([85, 85]);
    // target null is the same as no target.
    expect(nullTarget.body.trail_id).toBe(none.body.trail_id);
    expect(nullTarget.body.temperature).toBe(95);
  });

  it("loses no breadcrumb when many land on one trail at once: one trail, every breadcrumb counted", async () => {
    const source = unique("agent");
    // Eight at once: more than the isolate's database connections (platform/deps.ts MAX_DB_CONNECTIONS), so some queue.
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => breadcrumb(a.key, { source, target: "t", content: `http ${i}` })));
    expect(answers.map((r) => r.status)).toEqual(Array(8).fill(200));
    const ids = new Set(answers.map((r) => r.body.trail_id));
    expect(ids.size).toBe(1);
    const [id = ""] = [...ids];
    // And twelve more through the exported function, each on a connection of its own.
    const direct = await Promise.all(Array.from({ length: 12 }, (_, i) => query((db) => leaveBreadcrumb(db, a.tenantId, { source, target: "t", content: `direct ${i}` }))));
    expect(new Set(direct.map((d) => d.trailId))).toEqual(new Set([id]));
    expect(direct.filter((d) => d.created)).toEqual([]);
    const stored = await storedTrail(id);
    expect(stored?.breadcrumbs).toBe(20);
    expect(stored?.temperature).toBe(100);
    const [count] = await query((db) => db.select({ n: sql<number>`count(*)::int` }).from(memoryBreadcrumbs).where(eq(memoryBreadcrumbs.trailId, id)));
    expect(count?.n).toBe(20);
  });

  it("is open to any key of the tenant, an admin-only key included", async () => {
    const res = await breadcrumb(a.adminKey, { source: unique("ops"), content: "from the admin key" });
    expect(res.status).toBe(200);
  });
});

describe("reading trails", () => {
  it("lists the tenant's trails at or above min_temp, hottest first, with their temperatures decayed to now", async () => {
    const t = await sandbox(unique("memory-hot"));
    const hottest = await breadcrumb(t.key, { source: "s1", content: "x" });
    await breadcrumb(t.key, { source: "s1", content: "x" }); // 95
    const fresh = await breadcrumb(t.key, { source: "s2", content: "x" }); // 85
    const older = await breadcrumb(t.key, { source: "s3", content: "x" });
    await age(older.body.trail_id, { temperature: 6 }); // 85 × 0.5^(6/24) ≈ 71.5
    const cold = await breadcrumb(t.key, { source: "s4", content: "x" });
    await age(cold.body.trail_id, { temperature: 48 }); // 21.25

    const list = await hot(t.key, "?min_temp=70");
    expect(list.status).toBe(200);
    expect(list.body.object).toBe("list");
    expect(list.body.trails.map((r) => r.id)).toEqual([hottest.body.trail_id, fresh.body.trail_id, older.body.trail_id]);
    expect(list.body.count).toBe(3);
    expect(list.body.trails[0]).toMatchObject({ object: "memory.trail", source: "s1", target: null, temperature: 95, breadcrumbs: 2 });
    expect(list.body.trails[2]?.temperature).toBeCloseTo(85 * 0.5 ** 0.25, 1);
    expect(Date.parse(list.body.trails[0]?.last_warmed_at ?? "")).toBeGreaterThan(Date.now() - 60_000);

    // The default min_temp is 70; a lower one brings the cold trail in, last.
    expect((await hot(t.key)).body.count).toBe(3);
    const all = await hot(t.key, "?min_temp=0");
    expect(all.body.trails.map((r) => r.id).at(-1)).toBe(cold.body.trail_id);
    expect(all.body.trails.at(-1)?.temperature).toBeCloseTo(21.25, 1);
    // limit keeps the hottest.
    const top = await hot(t.key, "?min_temp=0&limit=1");
    expect(top.body.trails.map((r) => r.id)).toEqual([hottest.body.trail_id]);
  });

  it("says when the trail was last warmed (its newest breadcrumb) apart from when it was created", async () => {
    const source = unique("agent");
    const first = await breadcrumb(a.key, { source, content: "long ago" });
    await age(first.body.trail_id, { temperature: 24 * 3, breadcrumbs: 24 * 3 });
    await breadcrumb(a.key, { source, content: "now" });
    const detail = await trail(a.key, first.body.trail_id);
    expect(Date.now() - Date.parse(detail.body.last_warmed_at)).toBeLessThan(60_000);
    expect(Date.now() - Date.parse(detail.body.created_at)).toBeGreaterThan(3 * 24 * 3_600_000 - 60_000);
    const listed = await hot(a.key, "?min_temp=0&limit=200");
    expect(listed.body.trails.find((r) => r.id === first.body.trail_id)?.last_warmed_at).toBe(detail.body.last_warmed_at);
  });

  it("shows a trail's temperature decayed to now: 85 twelve hours ago is 85 × 0.5^0.5", async () => {
    const left = await breadcrumb(a.key, { source: unique("agent"), content: "x" });
    await age(left.body.trail_id, { temperature: 12 });
    const detail = await trail(a.key, left.body.trail_id);
    expect(detail.body.temperature).toBeCloseTo(85 * Math.SQRT1_2, 1);
    // The stored value is untouched by the read.
    expect((await storedTrail(left.body.trail_id))?.temperature).toBe(85);
  });
});

describe("tenant isolation", () => {
  it("answers another tenant's trail id with the same 404 as an unknown one", async () => {
    const left = await breadcrumb(a.key, { source: unique("secret"), content: "tenant A only" });
    const foreign = await trail<ErrorBody>(b.key, left.body.trail_id);
    const unknown = await trail<ErrorBody>(b.key, "trl_00000000000000000000");
    expect(foreign.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect(foreign.body.error.code).toBe("not_found");
    expect(foreign.body.error.message.replace(left.body.trail_id, "ID")).toBe(unknown.body.error.message.replace("trl_00000000000000000000", "ID"));
    expect((await trail(a.key, left.body.trail_id)).status).toBe(200);
  });

  it("never warms or lists another tenant's trail: the same source and target start B's own", async () => {
    const source = unique("shared-name");
    const mine = await breadcrumb(a.key, { source, target: "x", content: "A" });
    const theirs = await breadcrumb(b.key, { source, target: "x", content: "B" });
    expect(theirs.body.trail_id).not.toBe(mine.body.trail_id);
    expect(theirs.body.temperature).toBe(85);
    expect((await storedTrail(mine.body.trail_id))?.temperature).toBe(85);
    const listed = await hot(b.key, "?min_temp=0&limit=200");
    expect(listed.body.trails.map((r) => r.id)).not.toContain(mine.body.trail_id);
    expect(listed.body.trails.map((r) => r.id)).toContain(theirs.body.trail_id);
  });
});

describe("bad input", () => {
  it.each([
    ["empty content", { source: "s", content: "" }, "invalid_value", "content"],
    ["blank source", { source: "   ", content: "c" }, "invalid_value", "source"],
    ["too long content", { source: "s", content: "x".repeat(8001) }, "invalid_value", "content"],
    ["too long source", { source: "s".repeat(201), content: "c" }, "invalid_value", "source"],
    ["too long target", { source: "s", target: "t".repeat(201), content: "c" }, "invalid_value", "target"],
    ["empty target", { source: "s", target: "", content: "c" }, "invalid_value", "target"],
    ["missing source", { content: "c" }, "missing_field", "source"],
    ["missing content", { source: "s" }, "missing_field", "content"],
    ["a number as source", { source: 5, content: "c" }, "invalid_value", "source"],
    ["an unknown field", { source: "s", content: "c", targt: "t" }, "invalid_value", "targt"],
  ])("refuses %s with a 400 naming the field", async (_, body, code, param) => {
    const res = await breadcrumb<ErrorBody>(a.key, body);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ type: "invalid_request_error", code, param });
    expect(res.body.error.message).toContain(param);
  });

  it("accepts the longest allowed fields", async () => {
    const res = await breadcrumb(a.key, { source: `${unique("s")}${"s".repeat(150)}`.slice(0, 200), target: "t".repeat(200), content: "c".repeat(8000) });
    expect(res.status).toBe(200);
  });

  it("refuses a body that is not JSON, or not an object", async () => {
    const notJson = await breadcrumb<ErrorBody>(a.key, "{nope");
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe("invalid_json");
    const array = await breadcrumb<ErrorBody>(a.key, "[]");
    expect(array.status).toBe(400);
    expect(array.body.error.code).toBe("invalid_value");
  });

  it.each([
    ["?min_temp=hot", "min_temp"],
    ["?min_temp=101", "min_temp"],
    ["?min_temp=-1", "min_temp"],
    ["?min_temp=", "min_temp"],
    ["?limit=0", "limit"],
    ["?limit=201", "limit"],
    ["?limit=2.5", "limit"],
    ["?tenant_id=x", "tenant_id"],
  ])("refuses the hot list with %s as a 400 naming %s", async (params, param) => {
    const res = await hot<ErrorBody>(a.key, params);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: "invalid_value", param });
  });

  it("refuses a bad key with 401 before anything else, and a wrong method with 405", async () => {
    const res = await breadcrumb<ErrorBody>("sk-sy-" + "A".repeat(43), { source: "s", content: "c" });
    expect(res.status).toBe(401);
    const wrong = await gateway("/v1/memory/breadcrumb", { key: a.key });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("POST");
  });
});

describe("cooling", () => {
  it("removes cold trails past retention in the hourly job, keeps warm and recently warmed ones, and writes decayed temperatures back", async () => {
    const t = await sandbox(unique("memory-cool"));
    const gone = await breadcrumb(t.key, { source: "gone", content: "x" });
    await age(gone.body.trail_id, { temperature: 24 * 10, breadcrumbs: 24 * 40 }); // ≈0.08, last breadcrumb 40 days ago
    const coldButRecent = await breadcrumb(t.key, { source: "cold-recent", content: "x" });
    await age(coldButRecent.body.trail_id, { temperature: 24 * 10, breadcrumbs: 24 * 10 }); // cold, but within 30 days
    const oldButWarm = await breadcrumb(t.key, { source: "old-warm", content: "x" });
    await age(oldButWarm.body.trail_id, { temperature: 24, breadcrumbs: 24 * 40 }); // 42.5: not cold
    const fresh = await breadcrumb(t.key, { source: "fresh", content: "x" });

    const ctx = createExecutionContext();
    worker.scheduled(createScheduledController({ cron: RECONCILE_CRON, scheduledTime: Date.now() }), env, ctx);
    await waitOnExecutionContext(ctx);

    expect(await storedTrail(gone.body.trail_id)).toBeUndefined();
    const [crumbs] = await query((db) => db.select({ n: sql<number>`count(*)::int` }).from(memoryBreadcrumbs).where(eq(memoryBreadcrumbs.trailId, gone.body.trail_id)));
    expect(crumbs?.n).toBe(0);
    expect((await trail(t.key, gone.body.trail_id)).status).toBe(404);
    const cold = await storedTrail(coldButRecent.body.trail_id);
    expect(cold?.temperature).toBeLessThan(5);
    const warm = await storedTrail(oldButWarm.body.trail_id);
    expect(warm?.temperature).toBeCloseTo(42.5, 1);
    expect(Date.now() - (warm?.temperatureAt.getTime() ?? 0)).toBeLessThan(60_000);
    expect((await storedTrail(fresh.body.trail_id))?.temperature).toBe(85);
    // Written back, a read shows the same temperature as before.
    expect((await trail(t.key, oldButWarm.body.trail_id)).body.temperature).toBeCloseTo(42.5, 1);
  });

  it("runs by hand for the operator (POST /admin/memory/cool), answering what it cooled and removed; tenant admin keys get 403", async () => {
    const t = await sandbox(unique("memory-cool-op"));
    const gone = await breadcrumb(t.key, { source: "gone", content: "x" });
    await age(gone.body.trail_id, { temperature: 24 * 20, breadcrumbs: 24 * 31 });
    const kept = await breadcrumb(t.key, { source: "kept", content: "x" });
    await age(kept.body.trail_id, { temperature: 2 });

    const refused = await admin<ErrorBody>("POST", "/memory/cool", undefined, t.adminKey);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("permission_denied");
    expect(await storedTrail(gone.body.trail_id)).toBeDefined();

    const ran = expectStatus(await admin<CoolingJson>("POST", "/memory/cool"), 200);
    expect(ran).toMatchObject({ object: "memory.cooling", half_life_hours: 24, cold_temperature: 5, retention_days: 30 });
    expect(ran.removed).toBeGreaterThanOrEqual(1);
    expect(ran.removed_trail_ids).toContain(gone.body.trail_id);
    expect(ran.cooled).toBeGreaterThanOrEqual(1);
    expect(await storedTrail(gone.body.trail_id)).toBeUndefined();
    expect((await storedTrail(kept.body.trail_id))?.temperature).toBeCloseTo(85 * 0.5 ** (2 / 24), 1);
  });
});

describe("admin trail list", () => {
  it("shows the operator any tenant's trails and a tenant admin key only its own (another tenant is a 404)", async () => {
    const left = await breadcrumb(a.key, { source: unique("listed"), content: "x" });
    const byOperator = expectStatus(await admin<List<AdminTrailJson>>("GET", `/memory/trails?tenant_id=${a.tenantId}&limit=200`), 200);
    expect(byOperator.data.find((r) => r.id === left.body.trail_id)).toMatchObject({ tenant_id: a.tenantId, temperature: 85, breadcrumbs: 1 });
    expect(byOperator.data.every((r) => r.tenant_id === a.tenantId)).toBe(true);

    const own = expectStatus(await admin<List<AdminTrailJson>>("GET", "/memory/trails?limit=200", undefined, a.adminKey), 200);
    expect(own.data.map((r) => r.id)).toContain(left.body.trail_id);
    expect(own.data.every((r) => r.tenant_id === a.tenantId)).toBe(true);

    const other = await admin<ErrorBody>("GET", `/memory/trails?tenant_id=${a.tenantId}`, undefined, b.adminKey);
    expect(other.status).toBe(404);
    const theirs = expectStatus(await admin<List<AdminTrailJson>>("GET", "/memory/trails?limit=200", undefined, b.adminKey), 200);
    expect(theirs.data.every((r) => r.tenant_id === b.tenantId)).toBe(true);
  });

  it("pages with next_cursor, newest first", async () => {
    const t = await sandbox(unique("memory-pages"));
    for (const source of ["p1", "p2", "p3"]) await breadcrumb(t.key, { source, content: "x" });
    const first = expectStatus(await admin<List<AdminTrailJson>>("GET", `/memory/trails?tenant_id=${t.tenantId}&limit=2`), 200);
    expect(first.data.map((r) => r.source)).toEqual(["p3", "p2"]);
    expect(first.next_cursor).not.toBeNull();
    const second = expectStatus(await admin<List<AdminTrailJson>>("GET", `/memory/trails?tenant_id=${t.tenantId}&limit=2&cursor=${first.next_cursor ?? ""}`), 200);
    expect(second.data.map((r) => r.source)).toEqual(["p1"]);
    expect(second.next_cursor).toBeNull();
  });
});

describe("when Postgres is away", () => {
  it("answers 503 dependency_unavailable with Retry-After, saying to retry, never a 500", async () => {
    // The key is known to Redis already (the calls above), so authentication needs no Postgres.
    expect((await hot(a.key)).status).toBe(200);
    const down = { ...env, NEON_WS_PROXY: "ws://127.0.0.1:9/v2", DB_TIMEOUT_MS: "3000" };
    for (const request of [
      new Request("http://gateway.test/v1/memory/breadcrumb", { method: "POST", headers: { authorization: `Bearer ${a.key}` }, body: JSON.stringify({ source: "s", content: "c" }) }),
      new Request("http://gateway.test/v1/memory/trails/hot", { headers: { authorization: `Bearer ${a.key}` } }),
      new Request("http://gateway.test/v1/memory/trails/trl_00000000000000000000", { headers: { authorization: `Bearer ${a.key}` } }),
    ]) {
      const ctx = createExecutionContext();
      const res = await worker.fetch(request, down, ctx);
      await waitOnExecutionContext(ctx);
      const body = await res.json<ErrorBody>();
      expect({ status: res.status, code: body.error.code }).toEqual({ status: 503, code: "dependency_unavailable" });
      expect(res.headers.get("retry-after")).toBe("5");
      expect(body.error.message).toMatch(/retry/i);
    }
  });
});
