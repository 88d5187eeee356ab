import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { depsFrom } from "../../worker/src/platform/deps.ts";
import { clearIsolateCaches, loadRoutingView } from "../../worker/src/platform/hot-state.ts";
import type { LiveNode } from "../../worker/src/nodes/live.ts";
import { planRoute, type RouteInput } from "../../worker/src/routing/pick.ts";
import {
  bucketKey,
  queueTokens,
  rateField,
  readRates,
  reservationState,
  streamProgress,
  takeStreamed,
  usageWindow,
  type ReservationRates,
} from "../../worker/src/routing/reservation-usage.ts";
import type { ReservationEntry, RoutingSnapshot } from "../../worker/src/routing/snapshot.ts";
import { redis } from "./helpers.ts";
import { MODEL, routeInput, routeNode as node } from "./route-fixtures.ts";

// Reserved throughput (routing/reservation-usage.ts, docs/routing.md "Reserved capacity"): the
// measured rate per reserving tenant and model, and how routing uses it.

// `res-1` is reserved by ten_r at 100 tokens/s; `ord-1` is ordinary capacity.
const RESERVATIONS: ReservationEntry[] = [{ tenantId: "ten_r", model: MODEL, tokensPerSecond: 100, nodeIds: ["res-1"] }];
const NODES = [node("res-1"), node("ord-1")];

function input(tenantId: string, rates: ReservationRates | undefined, liveOver: Record<string, Partial<LiveNode>> = {}, nodes = NODES): RouteInput {
  return routeInput({ nodes, liveOver, reservations: RESERVATIONS, tenantId, random: () => 0.5, ...(rates === undefined ? {} : { reservationRates: rates }) });
}

const ids = (input: RouteInput) => planRoute(input).nodes.map((n) => n.id);
const rate = (tokensPerSecond: number): ReservationRates => ({ [rateField("ten_r", MODEL)]: tokensPerSecond });
// The reserved node is less loaded than the ordinary one, so least-load alone would pick it first.
const ordBusier = { "ord-1": { inFlight: 4 } };

describe("routing by reservation state", () => {
  it("sends a tenant under its rate to its reserved node first and keeps everyone else off it", () => {
    expect(ids(input("ten_r", rate(40), ordBusier))).toEqual(["res-1", "ord-1"]);
    // Another tenant: not even an idle reserved node while its tenant is being served below its rate.
    expect(ids(input("ten_o", rate(40)))).toEqual(["ord-1"]);
    const shed = planRoute(input("ten_o", rate(40), {}, [node("res-1")]));
    expect(shed.nodes).toEqual([]);
    expect(shed.emptyReason).toBe("shed");
  });

  it("lets others use an idle reservation's node while it is less than half full", () => {
    // Nothing served in the window: the half-full rule, reserved node last.
    expect(ids(input("ten_o", rate(0), ordBusier))).toEqual(["ord-1", "res-1"]);
    expect(ids(input("ten_o", rate(0), { "res-1": { inFlight: 8 } }))).toEqual(["ord-1"]);
  });

  it("spills a tenant at or over its rate to ordinary capacity first, and opens its node to others under the half-full rule", () => {
    expect(ids(input("ten_r", rate(100), ordBusier))).toEqual(["ord-1", "res-1"]);
    expect(ids(input("ten_r", rate(250), ordBusier))).toEqual(["ord-1", "res-1"]);
    expect(ids(input("ten_o", rate(250), ordBusier))).toEqual(["ord-1", "res-1"]);
    expect(ids(input("ten_o", rate(250), { "res-1": { inFlight: 8 } }))).toEqual(["ord-1"]);
  });

  it("gives an over-rate tenant no exemption on another tenant's reserved node", () => {
    const both: RoutingSnapshot["reservations"] = [...RESERVATIONS, { tenantId: "ten_q", model: MODEL, tokensPerSecond: 10, nodeIds: ["ord-1"] }];
    const rates: ReservationRates = { [rateField("ten_r", MODEL)]: 500, [rateField("ten_q", MODEL)]: 5 };
    const i = input("ten_r", rates);
    i.snapshot = { ...i.snapshot, reservations: both };
    // ten_q is under its rate and using it: ten_r (over) only has its own node left.
    expect(planRoute(i).nodes.map((n) => n.id)).toEqual(["res-1"]);
  });

  it("with the rates unknown (Redis down), keeps the reserved tenant first and others under the half-full rule", () => {
    expect(ids(input("ten_r", null, ordBusier))).toEqual(["res-1", "ord-1"]);
    expect(ids(input("ten_o", null, ordBusier))).toEqual(["ord-1", "res-1"]);
    expect(ids(input("ten_o", undefined, { "res-1": { inFlight: 8 } }))).toEqual(["ord-1"]);
  });

  it("reports the state for other helpers (none, under, over)", () => {
    const snapshot = input("x", undefined).snapshot;
    expect(reservationState({ snapshot, reservationRates: rate(99.9) }, "ten_r", MODEL)).toBe("under");
    expect(reservationState({ snapshot, reservationRates: rate(100) }, "ten_r", MODEL)).toBe("over");
    expect(reservationState({ snapshot, reservationRates: null }, "ten_r", MODEL)).toBe("under");
    expect(reservationState({ snapshot, reservationRates: rate(100) }, "ten_o", MODEL)).toBe("none");
    expect(reservationState({ snapshot, reservationRates: rate(100) }, "ten_r", "other-model")).toBe("none");
  });
});

describe("measuring delivered throughput", () => {
  const w = usageWindow(10);

  it("sums tokens per tenant and model over the window, in tokens per second", async () => {
    const prefix = `sy:rtest:${crypto.randomUUID()}:`;
    const now = Math.floor(Date.now() / w.bucketMs) * w.bucketMs + w.bucketMs / 2;
    const pipe = redis().pipeline();
    // 1,000 tokens for ten_r on m spread over the window, 300 on another model, 50 for another tenant.
    queueTokens(pipe, prefix, w, "ten_r", MODEL, 400, now - 8_000);
    queueTokens(pipe, prefix, w, "ten_r", MODEL, 600, now);
    queueTokens(pipe, prefix, w, "ten_r", "m2", 300, now);
    queueTokens(pipe, prefix, w, "ten_o", MODEL, 50, now - 1_000);
    await pipe.exec();
    const rates = await readRates(redis(), prefix, w, now);
    // The span is nine full one-second buckets and half of the current one.
    expect(rates?.[rateField("ten_r", MODEL)]).toBeCloseTo(1000 / 9.5, 5);
    expect(rates?.[rateField("ten_r", "m2")]).toBeCloseTo(300 / 9.5, 5);
    expect(rates?.[rateField("ten_o", MODEL)]).toBeCloseTo(50 / 9.5, 5);
  });

  it("forgets tokens once the window has moved past them, and lets Redis expire their buckets", async () => {
    const prefix = `sy:rtest:${crypto.randomUUID()}:`;
    const now = Date.now();
    const pipe = redis().pipeline();
    queueTokens(pipe, prefix, w, "ten_r", MODEL, 500, now);
    await pipe.exec();
    expect((await readRates(redis(), prefix, w, now))?.[rateField("ten_r", MODEL)]).toBeGreaterThan(0);
    // Eleven seconds on, the bucket is outside the ten-second window.
    expect((await readRates(redis(), prefix, w, now + 11_000))?.[rateField("ten_r", MODEL)]).toBeUndefined();
    const ttl = await redis().ttl(bucketKey(prefix, w, now));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(11);
  });

  it("counts a stream's content events while it runs, and leaves the rest to its end", async () => {
    const prefix = `sy:rtest:${crypto.randomUUID()}:`;
    const fast = usageWindow(10);
    let delivered = 0;
    let end: () => void = () => {};
    const done = new Promise<void>((resolve) => (end = resolve));
    const requestId = `req-${crypto.randomUUID()}`;
    const running = streamProgress(redis(), prefix, fast, { requestId, tenantId: "ten_r", model: MODEL, delivered: () => delivered, done });
    delivered = 30;
    await new Promise((r) => setTimeout(r, fast.bucketMs + 300));
    const midway = await readRates(redis(), prefix, fast);
    // 30 tokens counted before the stream ended, over a span of about ten seconds.
    expect((midway?.[rateField("ten_r", MODEL)] ?? 0) * 10).toBeGreaterThan(25);
    delivered = 45;
    end();
    await running;
    // The end takes the count once (its batch adds only the rest) and nothing more is written.
    expect(takeStreamed(requestId)).toBe(30);
    expect(takeStreamed(requestId)).toBe(0);
  });
});

describe("when Redis does not answer", () => {
  it("keeps routing on the last view with the rates unknown, then reads them again", async () => {
    clearIsolateCaches();
    const pending: Promise<unknown>[] = [];
    const deps = (bindings: typeof env) => depsFrom(bindings, (p) => void pending.push(p), () => {});
    const now = Date.now();
    const fresh = await loadRoutingView(deps(env), now);
    expect(fresh.reservationRates).not.toBeNull();
    // Past the isolate's cache, with Redis unreachable: the same snapshot and nodes, rates unknown.
    const down = await loadRoutingView(deps({ ...env, UPSTASH_REDIS_REST_URL: "http://127.0.0.1:9" }), now + 2_000);
    expect(down.reservationRates).toBeNull();
    expect(down.snapshot).toBe(fresh.snapshot);
    expect(down.live).toEqual(fresh.live);
    await Promise.allSettled(pending);
    clearIsolateCaches();
    expect((await loadRoutingView(deps(env))).reservationRates).not.toBeNull();
  });
});
