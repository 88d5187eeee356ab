/** The autoscaler's rules (worker/src/autoscaling/decide.ts), run in workerd like the job that calls them. */
import { describe, expect, it } from "vitest";
import { decide, EMPTY_MEMORY, type Decision, type Policy, type ScalingMemory, type ScalingView, type ViewNode } from "../../worker/src/autoscaling/decide.ts";

const T0 = Date.parse("2026-12-07T12:00:00Z");
const S = 1000;

function policy(fields: Partial<Policy> = {}): Policy {
  return {
    model: "m",
    region: "us-east-1",
    minNodes: 1,
    maxNodes: 4,
    targetQueuePerNode: 2,
    scaleUpAfterSeconds: 120,
    idleSeconds: 900,
    provider: "aws",
    gpu: "A10G",
    spot: false,
    mode: "on",
    updatedAt: new Date(T0),
    ...fields,
  };
}

function node(id: string, fields: Partial<ViewNode> = {}): ViewNode {
  return {
    id,
    status: "ready",
    adminStatus: "active",
    waiting: 0,
    inFlight: 1,
    running: 1,
    launch: { id: `lnc_${id}`, state: "serving", spot: false, replacesNodeId: null },
    spotNotice: null,
    ...fields,
  };
}

function view(nodes: ViewNode[], launches: ScalingView["launches"] = [], replaced: string[] = []): ScalingView {
  return { nodes, launches, replaced };
}

/** Runs decide at each time in turn on the same view, carrying the memory; returns each run's decisions. */
function runs(p: Policy, v: ScalingView, times: number[], memory: ScalingMemory = EMPTY_MEMORY): Decision[][] {
  const out: Decision[][] = [];
  let m = memory;
  for (const t of times) {
    const r = decide(p, v, m, t);
    out.push(r.decisions);
    m = r.memory;
  }
  return out;
}

const actions = (ds: Decision[]): string[] => ds.map((d) => (d.action === "launch" ? `launch ${d.count}` : "nodeId" in d ? `${d.action} ${d.nodeId}` : `${d.action} ${d.rule}`));

describe("decide", () => {
  it("launches on a burst only once the queue has stayed above target for the sustain time", () => {
    const busy = view([node("a", { waiting: 6 }), node("b", { waiting: 4 })]);
    const [first, atHalf, atSustain] = runs(policy(), busy, [T0, T0 + 60 * S, T0 + 120 * S]);
    expect(actions(first ?? [])).toEqual(["hold queue_sustaining"]);
    expect(first?.[0]?.reason).toContain("Waiting per node 5 is above the target 2 for 0 s of the 120 s");
    expect(actions(atHalf ?? [])).toEqual(["hold queue_sustaining"]);
    // 10 waiting at 2 per node wants 5 nodes: 3 more, capped by max 4 → 2.
    expect(actions(atSustain ?? [])).toEqual(["launch 2"]);
    const launch = atSustain?.[0];
    expect(launch?.reason).toContain("above the target 2 for 120 s (≥ 120 s): launching 2");
    expect(launch?.details).toMatchObject({ serving: 2, on_the_way: 0, waiting_total: 10, waiting_per_node: 5, max_nodes: 4 });
  });

  it("starts the sustain clock again when the queue dips below target", () => {
    const busy = view([node("a", { waiting: 6 })]);
    const calm = view([node("a", { waiting: 1 })]);
    let r = decide(policy(), busy, EMPTY_MEMORY, T0);
    r = decide(policy(), calm, r.memory, T0 + 60 * S);
    expect(r.memory.queueAboveSince).toBeNull();
    r = decide(policy(), busy, r.memory, T0 + 120 * S);
    expect(actions(r.decisions)).toEqual(["hold queue_sustaining"]);
  });

  it("never launches above max, and says so", () => {
    const full = view([node("a", { waiting: 9 }), node("b", { waiting: 9 }), node("c", { waiting: 9 }), node("d", { waiting: 9 })]);
    const [first, later] = runs(policy(), full, [T0, T0 + 300 * S]);
    expect(actions(first ?? [])).toEqual(["hold at_max"]);
    expect(actions(later ?? [])).toEqual(["hold at_max"]);
    expect(later?.[0]?.reason).toContain("the maximum (4)");
  });

  it("counts launches in progress as capacity, so one burst does not launch twice", () => {
    const v = view([node("a", { waiting: 6 })], [{ id: "lnc_x", nodeId: "sky-x", state: "launching", replacesNodeId: null }]);
    // 6 waiting over 2 nodes (one on its way) is 3 per node, above 2: wants ceil(6/2) = 3 nodes, has 2.
    const [, second] = runs(policy({ maxNodes: 8 }), v, [T0, T0 + 120 * S]);
    expect(actions(second ?? [])).toEqual(["launch 1"]);
    expect(second?.[0]?.details).toMatchObject({ serving: 1, on_the_way: 1, capacity: 2 });
    // Once that launch is also on its way, 6 over 3 is at target: hold.
    const after = view([node("a", { waiting: 6 })], [
      { id: "lnc_x", nodeId: "sky-x", state: "launching", replacesNodeId: null },
      { id: "lnc_y", nodeId: "sky-y", state: "pending", replacesNodeId: null },
    ]);
    expect(actions(decide(policy({ maxNodes: 8 }), after, EMPTY_MEMORY, T0 + 180 * S).decisions)).toEqual(["hold steady"]);
  });

  it("does not count a launch twice once its node serves", () => {
    const v = view([node("sky-x", { waiting: 0 })], [{ id: "lnc_x", nodeId: "sky-x", state: "registering", replacesNodeId: null }]);
    const r = decide(policy({ minNodes: 2 }), v, EMPTY_MEMORY, T0);
    expect(actions(r.decisions)).toEqual(["launch 1"]);
    expect(r.figures).toMatchObject({ serving: 1, on_the_way: 0 });
  });

  it("launches up to min at once, counting stale, unhealthy and drained nodes out", () => {
    const v = view([node("a", { status: "stale" }), node("b", { status: "unhealthy" }), node("c", { adminStatus: "draining" }), node("d")]);
    const r = decide(policy({ minNodes: 3 }), v, EMPTY_MEMORY, T0);
    expect(actions(r.decisions)).toEqual(["launch 2"]);
    expect(r.decisions[0]?.reason).toBe("1 node serving or on the way, below the minimum of 3: launching 2.");
  });

  it("drains an idle launched node past idle_seconds, never below min", () => {
    const idle = (id: string) => node(id, { inFlight: 0, running: 0, waiting: 0 });
    const v = view([idle("a"), idle("b"), node("c")]);
    const p = policy({ minNodes: 2 });
    const [first, before, after] = runs(p, v, [T0, T0 + 899 * S, T0 + 900 * S]);
    expect(actions(first ?? [])).toEqual(["hold steady"]);
    expect(actions(before ?? [])).toEqual(["hold steady"]);
    expect(before?.[0]?.reason).toContain("2 idle (longest 899 s of 900 s)");
    // Two idle past the timeout, but three nodes with min 2: only one goes.
    expect(actions(after ?? [])).toEqual(["drain a"]);
    expect(after?.[0]?.reason).toContain("idle for 900 s (≥ 900 s) and 2 nodes stay (minimum 2): draining it, then terminating it once drained");
  });

  it("forgets a node's idle time once it works again", () => {
    const p = policy({ minNodes: 0 });
    let r = decide(p, view([node("a", { inFlight: 0, running: 0 })]), EMPTY_MEMORY, T0);
    expect(r.memory.idleSince).toEqual({ a: T0 });
    r = decide(p, view([node("a")]), r.memory, T0 + 600 * S);
    expect(r.memory.idleSince).toEqual({});
    r = decide(p, view([node("a", { inFlight: 0, running: 0 })]), r.memory, T0 + 1000 * S);
    expect(actions(r.decisions)).toEqual(["hold steady"]);
  });

  it("never drains a node it did not launch, nor one still registering", () => {
    const v = view([node("manual", { inFlight: 0, running: 0, launch: null }), node("new", { inFlight: 0, running: 0, launch: { id: "l", state: "registering", spot: false, replacesNodeId: null } })]);
    const [, later] = runs(policy({ minNodes: 0 }), v, [T0, T0 + 3600 * S]);
    expect(actions(later ?? [])).toEqual(["hold steady"]);
  });

  it("does not drain while the queue is above target", () => {
    const v = view([node("a", { inFlight: 0, running: 0 }), node("b", { waiting: 20 })]);
    const [, later] = runs(policy({ minNodes: 0, maxNodes: 2 }), v, [T0, T0 + 3600 * S]);
    expect(actions(later ?? [])).toEqual(["hold at_max"]);
  });

  it("replaces a spot node that got an interruption notice, once", () => {
    const notice = { receivedAt: T0, deadline: T0 + 120 * S, action: "terminate" };
    const v = view([node("a"), node("s", { spotNotice: notice, status: "draining" })]);
    const r = decide(policy({ minNodes: 2 }), v, EMPTY_MEMORY, T0 + 10 * S);
    // The replacement brings the count back to 2: the minimum needs nothing more.
    expect(actions(r.decisions)).toEqual(["replace s"]);
    expect(r.decisions[0]?.reason).toBe("Node s got a spot notice (terminate, goes away in 110 s): launching a replacement.");
    const handled = view(v.nodes, [{ id: "lnc_r", nodeId: "sky-r", state: "pending", replacesNodeId: "s" }], ["s"]);
    expect(actions(decide(policy({ minNodes: 2 }), handled, EMPTY_MEMORY, T0 + 70 * S).decisions)).toEqual(["hold steady"]);
  });

  it("does not replace a noticed node above max", () => {
    const notice = { receivedAt: T0, deadline: null, action: "preempt" };
    const v = view([node("a"), node("b"), node("s", { spotNotice: notice })]);
    const r = decide(policy({ maxNodes: 2 }), v, EMPTY_MEMORY, T0);
    expect(actions(r.decisions)).toEqual(["hold spot_at_max"]);
    expect(r.decisions[0]?.reason).toContain("no deadline given");
  });

  it("ignores the queue of a stale node", () => {
    const v = view([node("a", { status: "stale", waiting: 3 })]);
    const r = decide(policy({ minNodes: 0 }), v, EMPTY_MEMORY, T0);
    // A stale node's queue is not counted: there is nothing to act on.
    expect(actions(r.decisions)).toEqual(["hold steady"]);
  });
});
