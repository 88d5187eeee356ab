import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { PROBE_PATH } from "../../schema/contracts/heartbeat.ts";
import { nodes } from "../../schema/tables/index.ts";
import { sendNodeRequest, signedNodeHeaders, signedNodeRequest } from "./fleet-helpers.ts";
import { query } from "./helpers.ts";

// The route `backplane doctor` uses to check a node's secret: signed exactly like a heartbeat, answered
// without registering the node or touching its live state.

interface ProbeAnswer {
  ok: boolean;
  node_id: string;
  server_time: number;
}

interface ErrorAnswer {
  error: { message: string; code: string };
}

describe("node secret probe", () => {
  it("answers 200 with the node id and the gateway's time to a correctly signed probe, and registers nothing", async () => {
    const nodeId = "probe-fresh";
    const before = Date.now();
    const res = await signedNodeRequest(PROBE_PATH, nodeId, {});
    expect(res.status).toBe(200);
    const body = await res.json<ProbeAnswer>();
    expect(body).toMatchObject({ ok: true, node_id: nodeId });
    expect(body.server_time).toBeGreaterThanOrEqual(before - 1_000);
    expect(body.server_time).toBeLessThanOrEqual(Date.now() + 1_000);
    // A heartbeat would have registered the node; the probe must not.
    expect(await query((db) => db.select().from(nodes).where(eq(nodes.id, nodeId)))).toEqual([]);
  });

  it("refuses a probe signed with the wrong secret with 401 saying to check BACKPLANE_SECRET", async () => {
    const res = await signedNodeRequest(PROBE_PATH, "probe-wrong", {}, "w".repeat(64));
    expect(res.status).toBe(401);
    const body = await res.json<ErrorAnswer>();
    expect(body.error.code).toBe("invalid_api_key");
    expect(body.error.message).toContain("BACKPLANE_SECRET");
    expect(body.error.message).toContain("node secret --id probe-wrong");
  });

  it("refuses a replayed probe with 401", async () => {
    const raw = "{}";
    const captured = await signedNodeHeaders(PROBE_PATH, "probe-replay", raw);
    const first = await sendNodeRequest(PROBE_PATH, raw, captured);
    expect(first.status).toBe(200);
    await first.arrayBuffer();
    const replay = await sendNodeRequest(PROBE_PATH, raw, captured);
    expect(replay.status).toBe(401);
    const body = await replay.json<ErrorAnswer>();
    expect(body.error.code).toBe("invalid_api_key");
    expect(body.error.message).toContain("replayed");
  });
});
