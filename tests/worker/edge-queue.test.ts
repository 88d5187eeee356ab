import "../support/provided-context.ts";
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../worker/src/errors.ts";
import { settingsFrom } from "../../worker/src/settings.ts";
import { awaitTurn, endsSlot, everyNodeFull, type TurnAsk, type TurnDeps } from "../../worker/src/queue/turn.ts";
import type { WaitAsk, WaitOutcome } from "../../worker/src/queue/edge-queue.ts";
import type { LiveNode } from "../../worker/src/nodes/live.ts";
import type { NodeEntry } from "../../worker/src/routing/snapshot.ts";

// The edge queue (worker/src/queue/, docs/edge-queue.md): one Durable Object per model
// holding the requests that found every node full, admitted best rank first and round robin across
// tenants within a rank; the gateway side turns its outcomes into admissions and refusals.

let counter = 0;
/** A model name unique to this test, so each test has its own queue object. */
function modelName(label: string): string {
  counter += 1;
  return `q-${label}-${Date.now().toString(36)}-${counter}`;
}

function queueOf(model: string) {
  return env.EDGE_QUEUE.get(env.EDGE_QUEUE.idFromName(model));
}

function ask(ticket: string, rank: number, tenantId: string, extra: Partial<WaitAsk> = {}): WaitAsk {
  return { ticket, rank, cls: rank <= 1 ? "interactive" : rank <= 3 ? "standard" : "batch", tenantId, full: true, maxWaitMs: 10_000, maxWaiting: 100, recheckMs: 60_000, ...extra };
}

/** Starts waits in order (each one reaching the object before the next is sent) and records the order they are admitted in. */
async function line(model: string, asks: WaitAsk[]): Promise<{ admitted: string[]; outcomes: Promise<WaitOutcome>[] }> {
  const q = queueOf(model);
  const admitted: string[] = [];
  const outcomes: Promise<WaitOutcome>[] = [];
  for (const a of asks) {
    outcomes.push(
      Promise.resolve(q.wait(a)).then((o) => {
        if (o.kind === "admitted") admitted.push(a.ticket);
        return o;
      }),
    );
    // The object answers calls in arrival order; wait until this waiter is counted before sending the next.
    await expect.poll(async () => (await q.depth()).waiting, { timeout: 2_000, interval: 5 }).toBe(outcomes.length);
  }
  return { admitted, outcomes };
}

const node = (id: string): NodeEntry => ({ id, regionId: "r1", url: "http://127.0.0.1:1", status: "active", models: ["m"], keyVersion: 1 }) as unknown as NodeEntry;
const live = (inFlight: number, capacity: number): LiveNode => ({ status: "ready", at: Date.now(), intervalMs: 1000, models: ["m"], inFlight, capacity, waiting: 0, kvCacheUsage: 0 });

function turnDeps(vars: Record<string, string> = {}): { deps: TurnDeps; logs: string[]; background: Promise<unknown>[] } {
  const logs: string[] = [];
  const background: Promise<unknown>[] = [];
  const deps: TurnDeps = {
    settings: settingsFrom({ ...env, EDGE_QUEUE_MAX_WAIT_MS: "300", EDGE_QUEUE_MAX_WAITING: "2", EDGE_QUEUE_RECHECK_MS: "60000", ...vars }),
    log: (event) => logs.push(event),
    waitUntil: (p) => void background.push(p.catch(() => null)),
    requestId: "req_queue_test",
  };
  return { deps, logs, background };
}

function turnAsk(model: string, rank: number, tenantId: string, signal: AbortSignal = new AbortController().signal): TurnAsk {
  return { model, nodes: [node("n1")], live: { n1: live(1, 1) }, sentSince: () => 0, rank, cls: rank <= 1 ? "interactive" : "batch", tenantId, signal };
}

describe("edge queue object", () => {
  it("admits the best rank first when a slot frees, whatever the arrival order", async () => {
    const model = modelName("rank");
    const { admitted } = await line(model, [ask("batch-1", 5, "t1"), ask("standard-1", 3, "t2"), ask("interactive-1", 1, "t3"), ask("batch-2", 5, "t4")]);
    const q = queueOf(model);
    for (let i = 1; i <= 4; i++) {
      await q.release(1);
      await expect.poll(() => admitted.length, { timeout: 2_000, interval: 5 }).toBe(i);
    }
    expect(admitted).toEqual(["interactive-1", "standard-1", "batch-1", "batch-2"]);
    expect((await q.depth()).waiting).toBe(0);
  });

  it("takes tenants in turn within a rank, so one tenant's burst does not starve another", async () => {
    const model = modelName("fair");
    const { admitted } = await line(model, [ask("a1", 3, "tenant-a"), ask("a2", 3, "tenant-a"), ask("a3", 3, "tenant-a"), ask("a4", 3, "tenant-a"), ask("b1", 3, "tenant-b"), ask("c1", 3, "tenant-c"), ask("b2", 3, "tenant-b")]);
    const q = queueOf(model);
    await q.release(7);
    await expect.poll(() => admitted.length, { timeout: 2_000, interval: 5 }).toBe(7);
    expect(admitted).toEqual(["a1", "b1", "c1", "a2", "b2", "a3", "a4"]);
  });

  it("keeps a freed slot briefly for the next arrival, and lets one waiter through when nothing frees for the recheck time", async () => {
    const model = modelName("credit");
    const q = queueOf(model);
    expect(await q.release(1)).toBe(0);
    const first = await q.wait(ask("x1", 3, "t1"));
    expect(first.kind).toBe("admitted");
    expect(first.waitedMs).toBe(0);
    const started = Date.now();
    const probed = await q.wait(ask("x2", 3, "t1", { recheckMs: 200 }));
    expect(probed.kind).toBe("admitted");
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
  });

  it("gives a waiter's slot to an earlier one of the same rank when a caller sees free capacity", async () => {
    const model = modelName("free");
    const { admitted } = await line(model, [ask("early", 3, "t1")]);
    const q = queueOf(model);
    const late = Promise.resolve(q.wait(ask("late", 3, "t2", { full: false })));
    await expect.poll(() => admitted, { timeout: 2_000, interval: 5 }).toEqual(["early"]);
    expect((await q.depth()).waiting).toBe(1);
    await q.release(1);
    expect((await late).kind).toBe("admitted");
  });

  it("answers a waiter that leaves at once and forgets it", async () => {
    const model = modelName("leave");
    const { outcomes } = await line(model, [ask("gone", 5, "t1"), ask("stays", 5, "t1")]);
    const q = queueOf(model);
    expect(await q.leave("gone")).toBe(true);
    expect((await outcomes[0])?.kind).toBe("left");
    expect(await q.depth()).toMatchObject({ waiting: 1, byClass: { batch: 1 } });
    await q.release(1);
    expect((await outcomes[1])?.kind).toBe("admitted");
  });
});

describe("edge queue at the gateway", () => {
  it("does not call the queue when a node has room", async () => {
    const { deps } = turnDeps();
    const model = modelName("room");
    await awaitTurn(deps, env.EDGE_QUEUE, { ...turnAsk(model, 5, "t1"), live: { n1: live(0, 1) } });
    expect(everyNodeFull([node("n1")], { n1: live(0, 1) }, () => 0, 0)).toBe(false);
    expect(everyNodeFull([node("n1")], { n1: live(0, 1) }, () => 1, 0)).toBe(true);
    expect(everyNodeFull([node("n1")], { n1: live(3, 8) }, () => 0, 3)).toBe(true);
    expect((await queueOf(model).depth()).waiting).toBe(0);
  });

  it("refuses with 429 queue_timeout and Retry-After when the wait runs out", async () => {
    const { deps } = turnDeps();
    const model = modelName("timeout");
    const err = await awaitTurn(deps, env.EDGE_QUEUE, turnAsk(model, 5, "t1")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const api = err as ApiError;
    expect(api.status).toBe(429);
    expect(api.code).toBe("queue_timeout");
    expect(api.headers["retry-after"]).toBe("1");
    expect(api.message).toContain("Retry after 1 s");
    expect(api.message).toContain("'batch'");
  });

  it("refuses with 503 no_capacity and Retry-After when the model's queue is full, making room for a better class first", async () => {
    const { deps } = turnDeps({ EDGE_QUEUE_MAX_WAIT_MS: "5000" });
    const model = modelName("full");
    const first = awaitTurn(deps, env.EDGE_QUEUE, turnAsk(model, 5, "t1"));
    await expect.poll(async () => (await queueOf(model).depth()).waiting, { timeout: 2_000, interval: 5 }).toBe(1);
    const second = awaitTurn(deps, env.EDGE_QUEUE, turnAsk(model, 5, "t2")).catch((e: unknown) => e);
    await expect.poll(async () => (await queueOf(model).depth()).waiting, { timeout: 2_000, interval: 5 }).toBe(2);
    // An interactive request finds the line full: the newest batch waiter is refused to make room for it.
    const interactive = awaitTurn(deps, env.EDGE_QUEUE, turnAsk(model, 1, "t3"));
    const evicted = (await second) as ApiError;
    expect(evicted.status).toBe(503);
    expect(evicted.code).toBe("no_capacity");
    expect(evicted.headers["retry-after"]).toBe("5");
    // Another batch request ranks no better than anyone waiting: refused at once.
    const err = (await awaitTurn(deps, env.EDGE_QUEUE, turnAsk(model, 5, "t4")).catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(503);
    expect(err.message).toContain("2 requests are already waiting");
    expect(await queueOf(model).depth()).toMatchObject({ waiting: 2, byClass: { batch: 1, interactive: 1 } });
    await queueOf(model).release(2);
    await Promise.all([first, interactive]);
  });

  it("removes a waiter whose client disconnects, and a finished request admits the next in line", async () => {
    const { deps, background } = turnDeps({ EDGE_QUEUE_MAX_WAIT_MS: "5000" });
    const model = modelName("cancel");
    const client = new AbortController();
    const cancelled = awaitTurn(deps, env.EDGE_QUEUE, turnAsk(model, 1, "t1", client.signal)).catch((e: unknown) => e);
    await expect.poll(async () => (await queueOf(model).depth()).waiting, { timeout: 2_000, interval: 5 }).toBe(1);
    const next = awaitTurn(deps, env.EDGE_QUEUE, turnAsk(model, 5, "t2"));
    await expect.poll(async () => (await queueOf(model).depth()).waiting, { timeout: 2_000, interval: 5 }).toBe(2);
    client.abort();
    expect(await cancelled).toBeInstanceOf(ApiError);
    await expect.poll(async () => (await queueOf(model).depth()).byClass, { timeout: 2_000, interval: 5 }).toEqual({ batch: 1 });
    // A request of the model ends on its node: its slot goes to the waiter (this isolate knows the model is congested).
    let untracked = 0;
    const end = endsSlot(deps, env.EDGE_QUEUE, model, () => (untracked += 1));
    end();
    end();
    expect(untracked).toBe(1);
    await next;
    await Promise.all(background);
    expect((await queueOf(model).depth()).waiting).toBe(0);
  });

  it("goes on to a node and logs it when the queue object cannot be reached", async () => {
    const { deps, logs } = turnDeps();
    const broken = {
      idFromName: (name: string) => env.EDGE_QUEUE.idFromName(name),
      get: () => ({ wait: () => Promise.reject(new Error("object unreachable")), leave: () => Promise.resolve(false), release: () => Promise.resolve(0) }),
    } as unknown as typeof env.EDGE_QUEUE;
    await awaitTurn(deps, broken, turnAsk(modelName("down"), 5, "t1"));
    expect(logs).toContain("edge_queue_unavailable");
  });
});
