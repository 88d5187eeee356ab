import "../support/provided-context.ts";
import { and, eq } from "drizzle-orm";
import { env } from "cloudflare:test";
import { afterEach, describe, expect, inject, it, vi } from "vitest";
import { auditLogs } from "../../schema/tables/index.ts";
import { PRIORITY_RANK_HEADER, verifyPriorityRank } from "../../schema/contracts/priority.ts";
import { NONCE_HEADER, deriveNodeSecret, importSigningKey } from "../../schema/contracts/signing.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type KeyJson } from "./admin-helpers.ts";
import { gateway, query } from "./helpers.ts";
import { effectiveClass, priorityRank, requestPriority } from "../../worker/src/priority/class.ts";

// Priority classes (docs/priority.md): where a request's class comes from, the header that lowers
// it, the echo, and the signed rank the backplane gets.

const messages = [{ role: "user", content: "Which train goes first?" }];

function chat(key: string, priority?: string): Promise<Response> {
  return gateway("/v1/chat/completions", {
    method: "POST",
    key,
    headers: priority === undefined ? {} : { "x-switchyard-priority": priority },
    body: JSON.stringify({ model: "sim-llama-8b", messages, max_tokens: 2 }),
  });
}

/** The class the gateway ran a request at (x-switchyard-priority of a 200). */
async function classOf(key: string, priority?: string): Promise<string | null> {
  const res = await chat(key, priority);
  expect(res.status, await res.clone().text()).toBe(200);
  await res.arrayBuffer();
  return res.headers.get("x-switchyard-priority");
}

async function audited(action: string, targetId: string): Promise<Record<string, unknown>[]> {
  const rows = await query((db) => db.select().from(auditLogs).where(and(eq(auditLogs.action, action), eq(auditLogs.targetId, targetId))));
  return rows.map((r) => r.details);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the admin API", () => {
  it("sets, shows, audits and clears a key's priority_class", async () => {
    const box = await sandbox();
    const created = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: box.environmentId, name: "jobs", priority_class: "batch" }), 201);
    expect(created.priority_class).toBe("batch");
    expect(expectStatus(await admin<KeyJson>("GET", `/keys/${created.id}`), 200).priority_class).toBe("batch");

    const updated = expectStatus(await admin<KeyJson>("PATCH", `/keys/${created.id}`, { priority_class: "interactive" }), 200);
    expect(updated.priority_class).toBe("interactive");
    const [details] = await audited("api_key.update", created.id);
    expect(details).toMatchObject({ before: { priority_class: "batch" }, after: { priority_class: "interactive" } });

    expect(expectStatus(await admin<KeyJson>("PATCH", `/keys/${created.id}`, { priority_class: null }), 200).priority_class).toBeNull();
    expect(await audited("api_key.update", created.id)).toHaveLength(2);
  });

  it("refuses an unknown class or field with a 400 naming it", async () => {
    const box = await sandbox();
    const bad = await admin<ErrorBody>("PATCH", `/keys/${box.keyId}`, { priority_class: "urgent" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe("priority_class");
    const envBad = await admin<ErrorBody>("PATCH", `/environments/${box.environmentId}`, { priority_class: "high" });
    expect(envBad.status).toBe(400);
    expect(envBad.body.error.param).toBe("priority_class");
    const other = await admin<ErrorBody>("PATCH", `/keys/${box.keyId}`, { name: "renamed" });
    expect(other.status).toBe(400);
  });

  it("sets and audits an environment's priority_class", async () => {
    const box = await sandbox();
    const env1 = expectStatus(await admin<{ priority_class: string | null }>("PATCH", `/environments/${box.environmentId}`, { priority_class: "interactive" }), 200);
    expect(env1.priority_class).toBe("interactive");
    const [details] = await audited("environment.update", box.environmentId);
    expect(details).toMatchObject({ before: { priority_class: null }, after: { priority_class: "interactive" } });
    const created = expectStatus(await admin<{ id: string; priority_class: string | null }>("POST", "/environments", { tenant_id: box.tenantId, name: "jobs", priority_class: "batch" }), 201);
    expect(created.priority_class).toBe("batch");
  });
});

describe("a request's class", () => {
  it("is standard by default, echoed in x-switchyard-priority", async () => {
    const box = await sandbox();
    expect(await classOf(box.key)).toBe("standard");
  });

  it("comes from the key, else its environment, and follows admin changes at once", async () => {
    const box = await sandbox();
    expectStatus(await admin("PATCH", `/environments/${box.environmentId}`, { priority_class: "interactive" }), 200);
    expect(await classOf(box.key)).toBe("interactive");
    expectStatus(await admin("PATCH", `/keys/${box.keyId}`, { priority_class: "batch" }), 200);
    expect(await classOf(box.key)).toBe("batch");
    expectStatus(await admin("PATCH", `/keys/${box.keyId}`, { priority_class: null }), 200);
    expect(await classOf(box.key)).toBe("interactive");
  });

  it("may be lowered with the header, never raised (a higher class is clamped to the allowed one)", async () => {
    const box = await sandbox();
    expectStatus(await admin("PATCH", `/keys/${box.keyId}`, { priority_class: "interactive" }), 200);
    expect(await classOf(box.key, "batch")).toBe("batch");
    expect(await classOf(box.key, " Standard ")).toBe("standard");
    expect(await classOf(box.key, "")).toBe("interactive");
    expectStatus(await admin("PATCH", `/keys/${box.keyId}`, { priority_class: "batch" }), 200);
    expect(await classOf(box.key, "interactive")).toBe("batch");
    expect(await classOf(box.key, "standard")).toBe("batch");
  });

  it("is echoed on an answer from the response cache too", async () => {
    const box = await sandbox();
    const body = JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: `cached ${box.keyId}` }], max_tokens: 2, temperature: 0 });
    const send = () => gateway("/v1/chat/completions", { method: "POST", key: box.key, headers: { "x-switchyard-priority": "batch" }, body });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const res = await send();
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      expect(res.headers.get("x-switchyard-priority")).toBe("batch");
      if (res.headers.get("x-switchyard-cache") === "hit") break;
      if (Date.now() > deadline) throw new Error("never a cache hit");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  it("answers an unknown header value with a 400 naming the header, before any node is asked", async () => {
    const box = await sandbox();
    const res = await chat(box.key, "urgent");
    expect(res.status).toBe(400);
    const body = await res.json<ErrorBody>();
    expect(body.error.code).toBe("invalid_value");
    expect(body.error.param).toBe("x-switchyard-priority");
    expect(body.error.message).toContain("interactive, standard, batch");
  });
});

describe("what the backplane gets", () => {
  it("a rank header whose MAC binds the rank to the signed request's nonce", async () => {
    const box = await sandbox();
    expectStatus(await admin("PATCH", `/keys/${box.keyId}`, { priority_class: "interactive" }), 200);
    const sent: Headers[] = [];
    const realFetch = globalThis.fetch;
    const backplane = inject("liveBackplaneUrl");
    // A pass-through recorder: the real backplane still serves the request.
    vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
      const request = new Request(input, init);
      if (request.url.startsWith(backplane)) sent.push(new Headers(request.headers));
      return realFetch(request);
    });
    expect(await classOf(box.key)).toBe("interactive");
    expect(await classOf(box.key, "batch")).toBe("batch");
    expect(await classOf(box.key, "standard")).toBe("standard");
    vi.restoreAllMocks();
    expect(sent).toHaveLength(3);
    // Standard without a reservation is the rank the backplane gives a request without the header: none is sent.
    expect(sent[2]?.has(PRIORITY_RANK_HEADER)).toBe(false);
    sent.pop();

    const key = await importSigningKey(await deriveNodeSecret(env.NODE_SIGNING_SECRET, inject("liveNodeId"), 1));
    const ranks = await Promise.all(sent.map((h) => verifyPriorityRank(key, h.get(NONCE_HEADER) ?? "", h.get(PRIORITY_RANK_HEADER))));
    // interactive = 1, batch = 5 (no reservation: priority/class.ts priorityRank).
    expect(ranks).toEqual([1, 5]);
    // Changed rank, or moved onto another request's nonce: refused.
    const [first, second] = sent;
    const value = first?.get(PRIORITY_RANK_HEADER) ?? "";
    expect(await verifyPriorityRank(key, first?.get(NONCE_HEADER) ?? "", `0${value.slice(1)}`)).toBeNull();
    expect(await verifyPriorityRank(key, second?.get(NONCE_HEADER) ?? "", value)).toBeNull();
  });
});

describe("priority/class.ts", () => {
  it("treats an identity cached before classes existed as standard", () => {
    expect(effectiveClass({}, null)).toBe("standard");
    expect(effectiveClass({}, "batch")).toBe("batch");
    expect(effectiveClass({}, "interactive")).toBe("standard");
  });

  it("ranks reserved tenants first within a class, never above a higher class", () => {
    const order = [priorityRank("interactive", true), priorityRank("interactive", false), priorityRank("standard", true), priorityRank("standard", false), priorityRank("batch", true), priorityRank("batch", false)];
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    const reservations = [{ tenantId: "t1", model: "m", tokensPerSecond: 100, nodeIds: ["n1"] }];
    // Under its reserved rate (or with the rate unknown) the tenant ranks as reserved; over it, like anyone.
    expect(requestPriority({ tenantId: "t1", priorityClass: "batch" }, null, reservations, { "t1|m": 40 }, "m")).toEqual({ class: "batch", reserved: true, rank: 4 });
    expect(requestPriority({ tenantId: "t1", priorityClass: "batch" }, null, reservations, null, "m")).toEqual({ class: "batch", reserved: true, rank: 4 });
    expect(requestPriority({ tenantId: "t1", priorityClass: "batch" }, null, reservations, { "t1|m": 150 }, "m")).toEqual({ class: "batch", reserved: false, rank: 5 });
    expect(requestPriority({ tenantId: "t1", priorityClass: "batch" }, null, reservations, { "t1|m": 40 }, "other")).toEqual({ class: "batch", reserved: false, rank: 5 });
  });
});
