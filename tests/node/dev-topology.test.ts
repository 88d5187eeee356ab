/** Topology files of the local stack (`npm start -- --topology <file>`): validation and the simulator flags they turn into. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseSimArgs } from "../../backplane/src/sim/args.ts";
import { ROOT } from "../../dev/stack.ts";
import { loadTopology, simArgsFor, TopologyError } from "../../dev/topology.ts";

const region = (id: string, extra: Record<string, unknown> = {}) => ({ id, name: id.toUpperCase(), latitude: 10, longitude: 20, ...extra });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "switchyard-topology-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function file(content: unknown): string {
  const path = join(dir, "topology.json");
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

/** The message loadTopology throws for `content` (fails the test when it does not throw a TopologyError). */
function errorFor(content: unknown): string {
  try {
    loadTopology(file(content));
  } catch (err) {
    expect(err).toBeInstanceOf(TopologyError);
    return (err as Error).message;
  }
  throw new Error("the topology was accepted");
}

describe("the shipped three-regions topology", () => {
  it("has three regions with real coordinates and two nodes in each", () => {
    const topology = loadTopology(join(ROOT, "dev/topologies/three-regions.json"));
    expect(topology.regions).toEqual([
      { id: "us-east", name: "Ashburn", latitude: 39.04, longitude: -77.49, priceMultiplier: 1 },
      { id: "eu-west", name: "Frankfurt", latitude: 50.11, longitude: 8.68, priceMultiplier: 1.1 },
      { id: "ap-southeast", name: "Singapore", latitude: 1.35, longitude: 103.82, priceMultiplier: 1.2 },
    ]);
    const perRegion = Object.fromEntries(topology.regions.map((r) => [r.id, topology.nodes.filter((n) => n.region === r.id).map((n) => n.id)]));
    expect(perRegion).toEqual({
      "us-east": ["us-east-1", "us-east-2"],
      "eu-west": ["eu-west-1", "eu-west-2"],
      "ap-southeast": ["ap-southeast-1", "ap-southeast-2"],
    });
  });
});

describe("loading a topology file", () => {
  it("fills in the defaults: price multiplier 1, the engine's own models and settings", () => {
    const topology = loadTopology(file({ regions: [region("r1")], nodes: [{ id: "n1", region: "r1" }] }));
    expect(topology.regions[0]?.priceMultiplier).toBe(1);
    expect(topology.nodes[0]).toEqual({ id: "n1", region: "r1" });
    expect(simArgsFor(topology.nodes[0] ?? { id: "", region: "" })).toEqual([]);
  });

  it("says so when the file does not exist or is not JSON", () => {
    expect(() => loadTopology(join(dir, "missing.json"))).toThrow(/Topology file .*missing\.json does not exist/);
    expect(errorFor("{ regions: [] }")).toMatch(/topology\.json is not valid JSON/);
  });

  it("names the node and field of a node in an undefined region", () => {
    const message = errorFor({ regions: [region("eu-west"), region("us-east")], nodes: [{ id: "n1", region: "eu-west" }, { id: "n2", region: "eu-wst" }] });
    expect(message).toContain(`nodes[1].region: unknown region "eu-wst" (the file defines: eu-west, us-east)`);
    expect(message).toContain("docs/topology.md");
  });

  it("names every bad field at once: coordinates out of range, misspelt keys, missing names", () => {
    const message = errorFor({ regions: [{ id: "r1", lattitude: 50, latitude: 91, longitude: -181 }], nodes: [{ id: "n1", region: "r1", sim: { ttft: 5 } }] });
    expect(message).toContain("regions[0].name:");
    expect(message).toContain("regions[0].latitude:");
    expect(message).toContain("regions[0].longitude:");
    expect(message).toContain("regions[0].lattitude: unknown field");
    expect(message).toContain("nodes[0].sim.ttft: unknown field");
  });

  it("refuses models outside the local catalogue and a price multiplier that is not positive", () => {
    const message = errorFor({ regions: [region("r1", { priceMultiplier: 0 })], nodes: [{ id: "n1", region: "r1", models: ["sim-llama-8b", "gpt-4"] }] });
    expect(message).toContain("regions[0].priceMultiplier:");
    expect(message).toContain("nodes[0].models[1]: must be a model of the local catalogue (sim-llama-8b, sim-embed, sim-whisper)");
  });

  it("refuses duplicate ids, ids the backplane would refuse, and empty lists", () => {
    expect(errorFor({ regions: [region("r1"), region("r1")], nodes: [{ id: "n1", region: "r1" }, { id: "n1", region: "r1" }] })).toMatch(
      /regions\[1\]\.id: region "r1" is defined twice[\s\S]*nodes\[1\]\.id: node "n1" is defined twice/,
    );
    expect(errorFor({ regions: [region("r1")], nodes: [{ id: "Node 1", region: "r1" }] })).toContain("nodes[0].id: must be 1-63 lowercase letters");
    expect(errorFor({ regions: [], nodes: [] })).toMatch(/regions: must list at least one region\n\s+nodes: must list at least one node/);
  });

  it("refuses backplaneEnv keys that are not backplane settings or that the stack sets itself", () => {
    const message = errorFor({
      regions: [region("r1")],
      nodes: [{ id: "n1", region: "r1", backplaneEnv: { BACKPLANE_DRAIN_GRACE_MS: 500, DEBUG: "1", BACKPLANE_REGION: "r2" } }],
    });
    expect(message).toContain("nodes[0].backplaneEnv.DEBUG: is not a backplane setting");
    expect(message).toContain("nodes[0].backplaneEnv.BACKPLANE_REGION: is set by the local stack");
    expect(message).not.toContain("BACKPLANE_DRAIN_GRACE_MS");
  });
});

describe("the simulated engine of a node", () => {
  it("serves the node's models with the node's timings", () => {
    const topology = loadTopology(
      file({
        regions: [region("r1")],
        nodes: [{ id: "n1", region: "r1", models: ["sim-embed"], sim: { ttftMs: 50, interTokenMs: 7.5, maxConcurrency: 2, outputTokens: 12, seed: 4 }, backplaneEnv: { BACKPLANE_BREAKER_FAILURES: 2 } }],
      }),
    );
    const node = topology.nodes[0] ?? { id: "", region: "" };
    expect(node.backplaneEnv).toEqual({ BACKPLANE_BREAKER_FAILURES: "2" });
    const options = parseSimArgs(simArgsFor(node), {});
    expect(options).toMatchObject({ ttftMs: 50, interTokenMs: 7.5, maxConcurrency: 2, outputTokens: 12, seed: 4 });
    expect(options.models).toEqual([{ name: "sim-embed", kind: "embed", maxModelLen: 512 }]);
  });
});
