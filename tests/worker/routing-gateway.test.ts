/** Routing through the gateway itself: region header permissions and the per-node circuit breaker. */
import { env } from "cloudflare:test";
import { eq } from "drizzle-orm";
import { describe, expect, inject, it } from "vitest";
import { environments } from "../../schema/tables/index.ts";
import { circuitKey, type CircuitState } from "../../worker/src/routing/breaker.ts";
import { sandbox } from "./admin-helpers.ts";
import { eventually, gateway, query, redis } from "./helpers.ts";

const body = JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: "route me" }], max_tokens: 2 });

function chat(key: string, headers: Record<string, string> = {}): Promise<Response> {
  return gateway("/v1/chat/completions", { method: "POST", body, key, headers });
}

describe("x-switchyard-region", () => {
  it("is refused with 403 unless the key's environment allows the region", async () => {
    const box = await sandbox();
    const refused = await chat(box.key, { "x-switchyard-region": "local" });
    expect(refused.status).toBe(403);
    const error = await refused.json<{ error: { code: string; message: string } }>();
    expect(error.error.code).toBe("permission_denied");
    expect(error.error.message).toContain("region_overrides");
  });

  it("is honoured where the environment allows it, and a pinned environment may name only its own region", async () => {
    const open = await sandbox();
    await query((db) => db.update(environments).set({ regionOverrides: ["local"] }).where(eq(environments.id, open.environmentId)));
    const res = await chat(open.key, { "x-switchyard-region": "local" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-switchyard-region")).toBe("local");
    await res.arrayBuffer();

    const pinned = await sandbox();
    await query((db) => db.update(environments).set({ pinnedRegion: "local", regionOverrides: ["*"] }).where(eq(environments.id, pinned.environmentId)));
    const home = await chat(pinned.key, { "x-switchyard-region": "local" });
    expect(home.status).toBe(200);
    await home.arrayBuffer();
    expect((await chat(pinned.key, { "x-switchyard-region": "hb-region" })).status).toBe(403);
  });
});

describe("circuit breaker per node", () => {
  const read = async () => (await redis().hget<CircuitState>(circuitKey(env.REDIS_PREFIX), "wtest-dead")) ?? null;

  it("opens for a node that keeps failing, keeps traffic away, then lets one trial decide", async () => {
    // The dead node is a static entry (never heartbeats) whose port is closed: every try fails.
    // Earlier files may have left this node's circuit and trial claim behind: start clean.
    await redis().hdel(circuitKey(env.REDIS_PREFIX), "wtest-dead");
    await redis().del(`${circuitKey(env.REDIS_PREFIX)}:trial:wtest-dead`);
    const opened = await eventually(async () => {
      const res = await chat(inject("keys").valid);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      const state = await read();
      return state && state.openUntil > Date.now() ? state : undefined;
    }, 15_000);
    expect(opened.failures).toBeGreaterThanOrEqual(3);

    // Open: requests are served by the live node without touching the dead one (the count stays).
    for (let i = 0; i < 3; i++) {
      const res = await chat(inject("keys").valid);
      expect(res.headers.get("x-switchyard-node")).toBe(inject("liveNodeId"));
      await res.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, 200));
    expect((await read())?.failures).toBe(opened.failures);

    // Cool-down over: half open. One request tries the node, fails, and opens the circuit again.
    await redis().hset(circuitKey(env.REDIS_PREFIX), { "wtest-dead": { failures: opened.failures, openUntil: Date.now() - 1 } });
    await new Promise((r) => setTimeout(r, 1_100)); // the isolate's routing cache (1 s in tests)
    const trial = await chat(inject("keys").valid);
    expect(trial.status).toBe(200);
    await trial.arrayBuffer();
    const reopened = await eventually(async () => {
      const state = await read();
      return state && state.openUntil > Date.now() ? state : undefined;
    });
    expect(reopened.failures).toBe(opened.failures + 1);
  });

  it("closes when the trial succeeds", async () => {
    const live = inject("liveNodeId");
    await redis().hset(circuitKey(env.REDIS_PREFIX), { [live]: { failures: 3, openUntil: Date.now() - 1 } });
    await new Promise((r) => setTimeout(r, 1_100));
    const res = await chat(inject("keys").valid);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-switchyard-node")).toBe(live);
    await res.arrayBuffer();
    await eventually(async () => ((await redis().hget(circuitKey(env.REDIS_PREFIX), live)) === null ? true : undefined));
  });
});
