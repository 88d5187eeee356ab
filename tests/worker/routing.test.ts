import { describe, expect, it } from "vitest";
import type { LiveNode } from "../../worker/src/nodes/live.ts";
import { circuitPhase, type CircuitState } from "../../worker/src/routing/breaker.ts";
import { callerLocation, distanceKm } from "../../worker/src/routing/geo.ts";
import { planRoute, type RouteInput } from "../../worker/src/routing/pick.ts";
import type { NodeEntry, RoutingSnapshot } from "../../worker/src/routing/snapshot.ts";
import { fnv1a } from "../../worker/src/routing/strategies.ts";
import { validateRequest } from "../../worker/src/proxy/validate.ts";
import { MODEL, NOW, routeInput, routeNode as node } from "./route-fixtures.ts";

// Ashburn, Frankfurt, Singapore.
const REGIONS = {
  "us-east": { latitude: 39.04, longitude: -77.49, multiplier: 1 },
  "eu-west": { latitude: 50.11, longitude: 8.68, multiplier: 1 },
  "ap-southeast": { latitude: 1.35, longitude: 103.82, multiplier: 1 },
};
const PARIS = { latitude: 48.86, longitude: 2.35, source: "header" as const };
const TOKYO = { latitude: 35.68, longitude: 139.69, source: "header" as const };

const NODES = [node("us-1", "us-east"), node("us-2", "us-east"), node("eu-1", "eu-west"), node("eu-2", "eu-west"), node("ap-1", "ap-southeast"), node("ap-2", "ap-southeast")];

function input(all: Partial<RouteInput> & { nodes?: NodeEntry[]; liveOver?: Record<string, Partial<LiveNode>> } = {}): RouteInput {
  const { nodes = NODES, snapshot: partial, ...over } = all;
  return routeInput({ nodes, regions: REGIONS, reservations: partial?.reservations ?? [], ...over });
}

const regionsOf = (ids: string[]) => [...new Set(ids.map((id) => id.split("-")[0]))];
const ids = (plan: ReturnType<typeof planRoute>) => plan.nodes.map((n) => n.id);

describe("choosing a region", () => {
  it("goes to the nearest region first and fails over to the next nearest", () => {
    expect(regionsOf(ids(planRoute(input({ location: PARIS }))))).toEqual(["eu", "us", "ap"]);
    // Tokyo: Singapore (5,300 km), then Frankfurt (9,300 km), then Ashburn (10,900 km).
    expect(regionsOf(ids(planRoute(input({ location: TOKYO }))))).toEqual(["ap", "eu", "us"]);
    const tokyo = planRoute(input({ location: TOKYO }));
    expect(tokyo.regions[0]?.id).toBe("ap-southeast");
    expect(tokyo.regions.map((r) => Math.round(r.distanceKm ?? -1))).toEqual([...tokyo.regions.map((r) => Math.round(r.distanceKm ?? -1))].sort((a, b) => a - b));
  });

  it("skips a region with no healthy node for the model, and puts a degraded region after healthy ones", () => {
    const eusDown = planRoute(input({ location: PARIS, liveOver: { "eu-1": { status: "unhealthy" }, "eu-2": { at: NOW - 10_000 } } }));
    expect(regionsOf(ids(eusDown))).toEqual(["us", "ap"]);
    // One of two EU nodes healthy is exactly half: not degraded. Add a third, dead one: 1/3 is degraded.
    const half = planRoute(input({ location: PARIS, liveOver: { "eu-1": { status: "unhealthy" } } }));
    expect(ids(half)[0]).toBe("eu-2");
    const third = planRoute(input({ location: PARIS, nodes: [...NODES, node("eu-3", "eu-west")], liveOver: { "eu-1": { status: "unhealthy" }, "eu-3": { status: "draining" } } }));
    expect(regionsOf(ids(third))).toEqual(["us", "ap", "eu"]);
    expect(third.regions.find((r) => r.id === "eu-west")?.degraded).toBe(true);
  });

  it("keeps a pinned environment in its region, and says so when the region has no capacity", () => {
    expect(regionsOf(ids(planRoute(input({ location: PARIS, pinnedRegion: "ap-southeast" }))))).toEqual(["ap"]);
    const down = planRoute(input({ location: PARIS, pinnedRegion: "ap-southeast", liveOver: { "ap-1": { status: "draining" }, "ap-2": { at: NOW - 60_000 } } }));
    expect(down.nodes).toEqual([]);
    expect(down.emptyReason).toBe("pinned_region");
  });

  it("tries a requested region first", () => {
    expect(regionsOf(ids(planRoute(input({ location: PARIS, requestedRegion: "ap-southeast" }))))).toEqual(["ap", "eu", "us"]);
  });

  it("reads the caller's location from request.cf, and from the header only when trusted", () => {
    const cf = new Request("http://x.test", { headers: { "x-switchyard-client-location": "1.3,103.8" } });
    Object.defineProperty(cf, "cf", { value: { latitude: "48.86", longitude: "2.35" } });
    expect(callerLocation(cf, false)).toEqual({ latitude: 48.86, longitude: 2.35, source: "cf" });
    expect(callerLocation(cf, true)).toEqual({ latitude: 1.3, longitude: 103.8, source: "header" });
    expect(callerLocation(new Request("http://x.test", { headers: { "x-switchyard-client-location": "999,1" } }), true)).toBeNull();
    expect(Math.round(distanceKm(PARIS, REGIONS["eu-west"]))).toBe(478);
  });
});

describe("choosing a node", () => {
  const oneRegion = NODES.filter((n) => n.regionId === "eu-west").concat(node("eu-3", "eu-west"));

  it("least-load: fewest waiting requests first, then running, then KV cache", () => {
    const plan = planRoute(input({ nodes: oneRegion, liveOver: { "eu-1": { waiting: 4, running: 8 }, "eu-2": { waiting: 0, running: 8, kvCacheUsage: 0.9 }, "eu-3": { waiting: 0, running: 2 } } }));
    expect(ids(plan)).toEqual(["eu-3", "eu-2", "eu-1"]);
  });

  it("least-load counts this isolate's sends since the last heartbeat, so a burst spreads", () => {
    const sent: Record<string, number> = { "eu-1": 0, "eu-2": 0, "eu-3": 0 };
    const firsts: string[] = [];
    for (let i = 0; i < 30; i++) {
      const first = ids(planRoute(input({ nodes: oneRegion, sentSince: (id) => sent[id] ?? 0 })))[0] ?? "";
      sent[first] = (sent[first] ?? 0) + 1;
      firsts.push(first);
    }
    expect(Object.values(sent).sort()).toEqual([10, 10, 10]);
  });

  it("prefix-affinity: the same prefix goes to the same node, distinct prefixes spread, a hot node is bounded", () => {
    const many = Array.from({ length: 6 }, (_, i) => node(`n${i}`, "eu-west"));
    const pick = (prefix: string, liveOver: Record<string, Partial<LiveNode>> = {}) =>
      ids(planRoute(input({ nodes: many, strategy: "prefix-affinity", prefixHash: fnv1a(prefix), liveOver })))[0];
    expect(new Set(Array.from({ length: 20 }, () => pick("You are a helpful assistant.|Hi")))).toHaveProperty("size", 1);
    const spread = new Set(Array.from({ length: 60 }, (_, i) => pick(`system prompt ${i}`)));
    expect(spread.size).toBeGreaterThanOrEqual(5);
    const home = pick("hot prefix") ?? "";
    expect(pick("hot prefix", { [home]: { inFlight: 12, waiting: 6 } })).not.toBe(home);
  });

  it("prefix-affinity hashes the system prompt and first user turn, not later turns", () => {
    const base = [{ role: "system", content: "You are terse." }, { role: "user", content: "Hello" }];
    const a = validateRequest("chat", JSON.stringify({ model: MODEL, messages: base }));
    const b = validateRequest("chat", JSON.stringify({ model: MODEL, messages: [...base, { role: "assistant", content: "Hi" }, { role: "user", content: "More" }] }));
    const c = validateRequest("chat", JSON.stringify({ model: MODEL, messages: [{ role: "system", content: "You are verbose." }, { role: "user", content: "Hello" }] }));
    expect(a.prefixHash).toBe(b.prefixHash);
    expect(a.prefixHash).not.toBe(c.prefixHash);
  });

  it("round-robin rotates, latency prefers the lowest TTFT average, random uses every node", () => {
    const rr = Array.from({ length: 6 }, () => ids(planRoute(input({ nodes: oneRegion, strategy: "round-robin" })))[0]);
    expect(new Set(rr).size).toBe(3);
    expect(rr.slice(0, 3)).toEqual(rr.slice(3));
    const lat = planRoute(input({ nodes: oneRegion, strategy: "latency", liveOver: { "eu-1": { ttftEwmaMs: 80 }, "eu-2": { ttftEwmaMs: 20 }, "eu-3": { ttftEwmaMs: null } } }));
    expect(ids(lat)).toEqual(["eu-2", "eu-1", "eu-3"]);
    const rnd = new Set(Array.from({ length: 40 }, () => ids(planRoute(input({ nodes: oneRegion, strategy: "random" })))[0]));
    expect(rnd.size).toBe(3);
  });
});

describe("circuits and reservations", () => {
  it("leaves out nodes with an open circuit and marks half-open ones for a trial", () => {
    const circuits: Record<string, CircuitState> = { "eu-1": { failures: 3, openUntil: NOW + 1000 }, "eu-2": { failures: 3, openUntil: NOW - 1 } };
    const plan = planRoute(input({ location: PARIS, circuits }));
    expect(ids(plan)).not.toContain("eu-1");
    expect(ids(plan)).toContain("eu-2");
    expect([...plan.halfOpen]).toEqual(["eu-2"]);
    expect(circuitPhase(circuits["eu-1"], NOW)).toBe("open");
    expect(circuitPhase(circuits["eu-2"], NOW)).toBe("half_open");
    expect(circuitPhase(undefined, NOW)).toBe("closed");
  });

  it("serves a reserving tenant from its nodes first and sheds ordinary traffic from busy reserved nodes", () => {
    const reservations = [{ tenantId: "ten_r", model: MODEL, tokensPerSecond: 500, nodeIds: ["us-1"] }];
    const snapshot = { reservations } as RoutingSnapshot;
    expect(ids(planRoute(input({ location: PARIS, tenantId: "ten_r", snapshot })))[0]).toBe("us-1");
    // Ordinary traffic uses a reserved node last, and not at all once it is half full.
    const ordinary = ids(planRoute(input({ location: PARIS, snapshot })));
    expect(ordinary.indexOf("us-1")).toBeGreaterThan(ordinary.indexOf("us-2"));
    const busy = { "us-1": { inFlight: 8 } };
    expect(ids(planRoute(input({ location: PARIS, snapshot, liveOver: busy })))).not.toContain("us-1");
    const onlyReserved = planRoute(input({ nodes: [node("us-1", "us-east")], snapshot, liveOver: busy }));
    expect(onlyReserved.emptyReason).toBe("shed");
    expect(ids(planRoute(input({ nodes: [node("us-1", "us-east")], tenantId: "ten_r", snapshot, liveOver: busy })))).toEqual(["us-1"]);
  });
});
