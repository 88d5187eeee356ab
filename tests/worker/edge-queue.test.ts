import "../support/provided-context.ts";
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../worker/src/errors.ts";
import { settingsFrom } from "../../worker/src/settings.ts";
import { awaitTurn, classThreshold, endsSlot, everyNodeFull, roomForRank, type TurnAsk, type TurnDeps } from "../../worker/src/queue/turn.ts";
import { loadSince, trackSend } from "../../worker/src/routing/sent.ts";
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
  return { model, nodes: [node("n1")], live: { n1: live(1, 1) }, loadSince: () => 0, rank, cls: rank <= 1 ? "interactive" : "batch", tenantId, signal };
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

  it("gives a slot freed for better classes only to them, keeping it for a better class's arrival while batch waits on", async () => {
    const model = modelName("headroom");
    const { admitted, outcomes } = await line(model, [ask("batch-1", 5, "t1")]);
    const q = queueOf(model);
    // The releasing gateway saw room for interactive only (roomForRank 1): batch keeps waiting.
    expect(await q.release(1, 1)).toBe(1);
    expect(await q.depth()).toMatchObject({ waiting: 1, credits: 1 });
    // Batch arriving after it cannot take that slot; interactive can, at once.
    const batchLate = Promise.resolve(q.wait(ask("batch-2", 5, "t2")));
    await expect.poll(async () => (await q.depth()).waiting, { timeout: 2_000, interval: 5 }).toBe(2);
    const interactive = await q.wait(ask("interactive-1", 1, "t3"));
    expect(interactive).toMatchObject({ kind: "admitted", waitedMs: 0 });
    expect(admitted).toEqual([]);
    expect((await q.depth()).credits).toBe(0);
    // A slot with room for standard goes to no batch waiter either; one with room for every class does.
    await q.release(1, 3);
    expect((await q.depth()).waiting).toBe(2);
    await q.release(2, 5);
    expect((await outcomes[0])?.kind).toBe("admitted");
    expect((await batchLate).kind).toBe("admitted");
    expect(admitted).toEqual(["batch-1"]);
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

  it("keeps headroom for better classes: a node is full for batch and standard before it is for interactive", () => {
    // QUEUE_CLASS_HEADROOM_PERCENT 25 on a target of 4: standard full at 3, batch at 2.
    expect([0, 1, 2].map((cls) => classThreshold(4, cls, 25))).toEqual([4, 3, 2]);
    expect([0, 1, 2].map((cls) => classThreshold(100, cls, 10))).toEqual([100, 90, 80]);
    expect(classThreshold(1, 2, 45)).toBe(1);
    expect(classThreshold(4, 2, 0)).toBe(4);
    expect(settingsFrom({ ...env, QUEUE_CLASS_HEADROOM_PERCENT: "25" }).queue.headroomPercent).toBe(25);
    expect(settingsFrom({ ...env, QUEUE_CLASS_HEADROOM_PERCENT: "" }).queue.headroomPercent).toBe(0);
    expect(() => settingsFrom({ ...env, QUEUE_CLASS_HEADROOM_PERCENT: "50" })).toThrow(/QUEUE_CLASS_HEADROOM_PERCENT must be between 0 and 45/);
    const nodes = [node("n1")];
    const at = (inFlight: number) => ({ n1: live(inFlight, 4) });
    // Ranks: 1 interactive, 3 standard, 5 batch (priorityRank without a reservation).
    expect([1, 3, 5].map((rank) => everyNodeFull(nodes, at(2), () => 0, 0, rank, 25))).toEqual([false, false, true]);
    expect([1, 3, 5].map((rank) => everyNodeFull(nodes, at(3), () => 0, 0, rank, 25))).toEqual([false, true, true]);
    expect([1, 3, 5].map((rank) => everyNodeFull(nodes, at(2), () => 0, 0, rank, 0))).toEqual([false, false, false]);
    // What a freed slot may go to: the worst class with room on some node, none when all are full.
    const settings = (headroomPercent: number) => ({ maxWaitMs: 1000, maxWaiting: 10, inflightTarget: 0, recheckMs: 1000, headroomPercent });
    expect([1, 2, 3, 4].map((n) => roomForRank(nodes, at(n), () => 0, settings(25)))).toEqual([5, 3, 1, -1]);
    expect(roomForRank([node("n1"), node("n2")], { n1: live(4, 4), n2: live(1, 4) }, () => 0, settings(25))).toBe(5);
    expect(roomForRank(nodes, at(4), () => 0, settings(0))).toBe(5);
  });

  it("counts a node's load as its heartbeat's, plus this isolate's sends since, less the requests the heartbeat counted that ended since", () => {
    const id = `n-load-${Date.now().toString(36)}`;
    const before = trackSend(id, Date.now() - 1_000);
    const heartbeatAt = Date.now() - 500;
    expect(loadSince(id, heartbeatAt)).toBe(0);
    const after = trackSend(id, Date.now());
    expect(loadSince(id, heartbeatAt)).toBe(1);
    before();
    before();
    expect(loadSince(id, heartbeatAt)).toBe(0);
    after();
    expect(loadSince(id, heartbeatAt)).toBe(-1);
    // A later heartbeat no longer counts either request; asking about the earlier one again still does.
    expect(loadSince(id, Date.now() + 1)).toBe(0);
    expect(loadSince(id, heartbeatAt)).toBe(-1);
    // Many ends between asks about one heartbeat (each end is looked at once): the count stays exact.
    const many = `n-many-${Date.now().toString(36)}`;
    const sentBefore = Array.from({ length: 1_000 }, () => trackSend(many, heartbeatAt - 10));
    for (let i = 0; i < sentBefore.length; i++) {
      sentBefore[i]?.();
      if (i % 97 === 0) expect(loadSince(many, heartbeatAt)).toBe(-(i + 1));
    }
    expect(loadSince(many, heartbeatAt)).toBe(-1_000);
    // The heartbeat said 3 in flight and one of them has ended: 2, so standard (full at 3) has room.
    const hb = { [id]: { ...live(3, 4), at: heartbeatAt } };
    expect(everyNodeFull([node(id)], hb, () => 0, 0, 3, 25)).toBe(true);
    expect(everyNodeFull([node(id)], hb, loadSince, 0, 3, 25)).toBe(false);
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

  it("with class headroom, a batch request waits while only interactive has room, and the end that frees room for batch admits it", async () => {
    const { deps, background } = turnDeps({ EDGE_QUEUE_MAX_WAIT_MS: "5000", QUEUE_CLASS_HEADROOM_PERCENT: "25" });
    const model = modelName("headroom-gw");
    // Target 4 (the node's capacity): 2 in flight is full for batch, not for interactive.
    const at = { n1: live(2, 4) };
    await awaitTurn(deps, env.EDGE_QUEUE, { ...turnAsk(model, 1, "t1"), live: at });
    expect((await queueOf(model).depth()).waiting).toBe(0);
    let admitted = false;
    const batch = awaitTurn(deps, env.EDGE_QUEUE, { ...turnAsk(model, 5, "t2"), live: at }).then(() => (admitted = true));
    await expect.poll(async () => (await queueOf(model).depth()).byClass, { timeout: 2_000, interval: 5 }).toEqual({ batch: 1 });
    // An end that leaves room for interactive only (3 of 4 in flight) does not admit it.
    endsSlot(deps, env.EDGE_QUEUE, model, () => undefined, () => roomForRank([node("n1")], { n1: live(3, 4) }, () => 0, deps.settings.queue))();
    await Promise.all(background);
    expect(admitted).toBe(false);
    expect((await queueOf(model).depth()).byClass).toEqual({ batch: 1 });
    // One that leaves 1 of 4 does.
    endsSlot(deps, env.EDGE_QUEUE, model, () => undefined, () => roomForRank([node("n1")], { n1: live(1, 4) }, () => 0, deps.settings.queue))();
    await batch;
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
