import type { Context } from "hono";
import { heartbeatSchema, spotNoticeSchema } from "../../../schema/contracts/heartbeat.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import type { Db } from "../platform/db.ts";
import { clearIsolateCaches, rememberLiveNode } from "../platform/hot-state.ts";
import { routingCacheKey } from "../routing/snapshot.ts";
import { healthChangeOf, recordHealthChange } from "./health.ts";
import { isStale, liveFromHeartbeat, liveNodesKey, MISSED_HEARTBEATS_STALE, type LiveNode } from "./live.ts";
import { recordSpotNotice, registryChanged, syncNodeFromHeartbeat, touchNode } from "./registry.ts";
import { parseNodeBody, verifyNodeRequest } from "./verify.ts";

/** Postgres keeps a node's last heartbeat at most this often when nothing else changed. */
const PERSIST_EVERY_SECONDS = 60;

function persist(c: Context<AppEnv>, what: string, fn: (db: Db) => Promise<unknown>): void {
  c.executionCtx.waitUntil(
    c.get("deps").db(fn).catch((err: unknown) => {
      c.get("deps").log("node_persist_failed", { what, error: String(err) });
    }),
  );
}

/**
 * `POST /internal/nodes/heartbeat`: a backplane's signed heartbeat. The live state goes to Redis
 * before the answer (one round trip), so routing sees it at once; registry changes (a new node, a
 * new URL, region or model list) go to Postgres in `waitUntil` and drop the cached routing snapshot.
 */
export async function heartbeat(c: Context<AppEnv>): Promise<Response> {
  const verified = await verifyNodeRequest(c);
  const hb = parseNodeBody(verified.body, heartbeatSchema);
  if (hb.nodeId !== verified.nodeId) throw new ApiError("invalid_value", "nodeId in the body differs from the signed node header.", { param: "nodeId" });
  const now = Date.now();
  const { redis, settings } = c.get("deps");
  const previous = verified.routing.live[hb.nodeId];
  const live = liveFromHeartbeat(hb, now, previous);
  await redis.hset(liveNodesKey(settings.redisPrefix), { [hb.nodeId]: live });
  rememberLiveNode(hb.nodeId, live);
  // A status change (or a return from stale) is kept in health_checks, written with the registry facts.
  const health = healthChangeOf(hb.nodeId, previous, live, now);

  const at = new Date(now);
  if (registryChanged(verified.node, hb)) {
    const isNew = verified.node === null;
    c.get("deps").log(isNew ? "node_registered" : "node_updated", { nodeId: hb.nodeId, region: hb.region, url: hb.url, models: hb.models });
    persist(c, "registry", async (db) => {
      await syncNodeFromHeartbeat(db, hb, at, isNew);
      await redis.del(routingCacheKey(settings.redisPrefix));
      if (health) await recordHealthChange(db, health);
    });
    clearIsolateCaches();
  } else if (previous?.status !== hb.status || (previous !== undefined && isStale(previous, now))) {
    c.get("deps").log("node_status", { nodeId: hb.nodeId, status: hb.status, previous: previous?.status ?? null });
    persist(c, "status", (db) => touchNode(db, hb.nodeId, hb.status, at, health));
  } else {
    c.executionCtx.waitUntil(
      redis
        .set(`${settings.redisPrefix}node:${hb.nodeId}:persisted`, 1, { nx: true, ex: PERSIST_EVERY_SECONDS })
        .then((fresh) => (fresh ? c.get("deps").db((db) => touchNode(db, hb.nodeId, hb.status, at)) : null))
        .catch((err: unknown) => c.get("deps").log("node_persist_failed", { what: "touch", error: String(err) })),
    );
  }
  return c.json({ ok: true, staleAfterMs: MISSED_HEARTBEATS_STALE * hb.intervalMs, serverTime: now });
}

/**
 * `POST /internal/nodes/spot`: the node's cloud announced its termination. The node is marked
 * draining in Redis before the answer, so no new request goes to it; the notice is recorded in
 * Postgres (`spot_events`).
 */
export async function spotNotice(c: Context<AppEnv>): Promise<Response> {
  const verified = await verifyNodeRequest(c);
  const notice = parseNodeBody(verified.body, spotNoticeSchema);
  if (notice.nodeId !== verified.nodeId) throw new ApiError("invalid_value", "nodeId in the body differs from the signed node header.", { param: "nodeId" });
  const now = Date.now();
  const previous = verified.routing.live[notice.nodeId];
  // No token counters: they belong to the `at` of the heartbeat that carried them, and this entry
  // moves `at` without a new sample (reconciliation waits for the next heartbeat).
  const draining: LiveNode = previous
    ? { ...previous, status: "draining", at: now, counters: {} }
    : { status: "draining", at: now, intervalMs: 60_000, models: [], inFlight: 0, capacity: 0, waiting: null, kvCacheUsage: null, counters: {} };
  await c.get("deps").redis.hset(liveNodesKey(c.get("deps").settings.redisPrefix), { [notice.nodeId]: draining });
  rememberLiveNode(notice.nodeId, draining);
  c.get("deps").log("node_spot_notice", { nodeId: notice.nodeId, provider: notice.provider, action: notice.action, deadline: notice.deadline });
  const health = healthChangeOf(notice.nodeId, previous, draining, now);
  persist(c, "spot", async (db) => {
    await recordSpotNotice(db, notice);
    if (health) await recordHealthChange(db, { ...health, detail: { ...health.detail, spot: { provider: notice.provider, action: notice.action } } });
  });
  return c.json({ ok: true }, 202);
}

/**
 * `POST /internal/nodes/probe`: `backplane doctor` asks whether the gateway accepts its secret. Only
 * the signature is verified (its nonce is claimed like any node request's); nothing about the node
 * changes, unlike a heartbeat, which registers it and sets its live state. A wrong secret, a stale
 * clock or a replay get verifyNodeRequest's 401, whose message says what to fix.
 */
export async function nodeProbe(c: Context<AppEnv>): Promise<Response> {
  const verified = await verifyNodeRequest(c);
  return c.json({ ok: true, node_id: verified.nodeId, server_time: Date.now() });
}
