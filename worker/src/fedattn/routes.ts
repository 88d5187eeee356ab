import { Hono, type Context } from "hono";
import { z } from "zod";
import { decodeContribution, DEFAULT_MAX_BYTES, TensorFormatError } from "../../../schema/contracts/fedattn-tensors.ts";
import { isOperatorToken } from "../admin/auth.ts";
import { bearerToken } from "../auth/keys.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { parseNodeBody, verifyNodeSignature } from "../nodes/verify.ts";
import { flushCounters, observe } from "../platform/metrics.ts";
import { enqueueRecord } from "./records.ts";
import { PARTICIPANT_HEADER, type SessionOutcome, type SessionRefusal, type SessionSummary } from "./state.ts";

/** Largest contribution body accepted (the tensor format's own default cap). */
export const MAX_CONTRIBUTION_BYTES = DEFAULT_MAX_BYTES;
const NODE = z.string().min(1).max(63);

const createSchema = z.object({
  initiator_node: NODE,
  sync_interval: z.number().int().min(1).max(1024).default(8),
  privacy_mode: z.boolean().default(true),
});
const joinSchema = z.object({ participant_node: NODE });

/** Queues this isolate's metrics for Redis after the response (platform/metrics.ts). */
function flushMetricsLater(c: Ctx): void {
  const deps = c.get("deps");
  deps.waitUntil(flushCounters(deps.redis, deps.settings.redisPrefix));
}

type Ctx = Context<AppEnv>;

function sessionStub(c: Ctx, id: string) {
  const ns = c.get("deps").fedattn.sessions;
  return ns.get(ns.idFromName(id));
}

function indexStub(c: Ctx) {
  const ns = c.get("deps").fedattn.index;
  return ns.get(ns.idFromName("index"));
}

function fail(r: SessionRefusal): never {
  throw new ApiError(r.code, r.message, { param: r.param });
}

/** The value of a session call (RPC results come back intersected with Disposable), or its refusal thrown. */
function unwrap<R extends SessionOutcome<object>>(outcome: R): Extract<R, { ok: true }> {
  if (!outcome.ok) fail(outcome);
  return outcome as Extract<R, { ok: true }>;
}

/** The signing node of a JSON call; `field` of the body must name it. */
async function signedJson<T>(c: Ctx, schema: z.ZodType<T>, field?: keyof T & string): Promise<{ nodeId: string; body: T }> {
  const raw = await c.req.text();
  const { nodeId } = await verifyNodeSignature(c, raw);
  const body = parseNodeBody(raw === "" ? "{}" : raw, schema);
  if (field !== undefined && body[field] !== nodeId) {
    throw new ApiError("permission_denied", `${field} must be the node that signs the request (${nodeId}).`, { param: field });
  }
  return { nodeId, body };
}

/** The operator's token on a request, checked in constant time; false when none is sent. */
async function isOperator(c: Ctx): Promise<boolean> {
  const token = bearerToken(c.req.header("authorization"));
  if (!token) return false;
  if (await isOperatorToken(token, c.get("deps").secrets.adminToken)) return true;
  throw new ApiError("invalid_api_key", "Incorrect admin token. Operators send 'Authorization: Bearer <ADMIN_TOKEN>'; nodes sign their requests.");
}

/** A node call with a bearer token is an operator's: the operator may read sessions but not take part. */
async function refuseOperator(c: Ctx): Promise<void> {
  if (await isOperator(c)) throw new ApiError("permission_denied", "The admin token can read sessions (GET /v1/fedattn/sessions/active) but not take part in them: only signed participant nodes can.");
}

async function createSession(c: Ctx): Promise<Response> {
  await refuseOperator(c);
  const { body } = await signedJson(c, createSchema, "initiator_node");
  const sessionId = `fa_${crypto.randomUUID().replaceAll("-", "")}`;
  const created = unwrap(
    await sessionStub(c, sessionId).create({
      sessionId,
      initiator: body.initiator_node,
      syncInterval: body.sync_interval,
      privacyMode: body.privacy_mode,
      idleTimeoutSeconds: c.get("deps").settings.fedattnIdleTimeoutSeconds,
    }),
  );
  await indexStub(c).add(sessionId);
  c.get("deps").log("fedattn_session_started", { sessionId, initiator: body.initiator_node, syncInterval: body.sync_interval });
  return c.json({ session_id: sessionId, status: "active", participants: created.summary.participants, sync_interval: body.sync_interval, privacy_mode: body.privacy_mode });
}

async function joinSession(c: Ctx): Promise<Response> {
  await refuseOperator(c);
  const { body } = await signedJson(c, joinSchema, "participant_node");
  const joined = unwrap(await sessionStub(c, c.req.param("id") ?? "").join(body.participant_node));
  return c.json({ status: "joined", participants: joined.participants });
}

async function leaveSession(c: Ctx): Promise<Response> {
  await refuseOperator(c);
  const { body } = await signedJson(c, joinSchema, "participant_node");
  const id = c.req.param("id") ?? "";
  const left = unwrap(await sessionStub(c, id).leave(body.participant_node));
  c.get("deps").log("fedattn_participant_left", { sessionId: id, node: body.participant_node, sessionStatus: left.sessionStatus });
  return c.json({ status: "left", participants: left.participants, session_status: left.sessionStatus });
}

async function endSession(c: Ctx): Promise<Response> {
  await refuseOperator(c);
  const { nodeId } = await signedJson(c, z.object({}).loose());
  const id = c.req.param("id") ?? "";
  const ended = unwrap(await sessionStub(c, id).end(nodeId));
  c.get("deps").log("fedattn_session_ended", { sessionId: id, by: nodeId, durationSeconds: ended.durationSeconds });
  return c.json({ status: "ended", duration_seconds: ended.durationSeconds, participants: ended.participants });
}

/** Turns a session object's refusal response into the gateway's error. */
async function refusalOf(res: Response): Promise<never> {
  fail(await res.json<SessionRefusal>());
}

async function contribute(c: Ctx): Promise<Response> {
  const started = Date.now();
  await refuseOperator(c);
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > MAX_CONTRIBUTION_BYTES) {
    throw new ApiError("request_too_large", `A contribution may be at most ${MAX_CONTRIBUTION_BYTES} bytes; this one is ${declared}.`);
  }
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  if (bytes.byteLength > MAX_CONTRIBUTION_BYTES) {
    throw new ApiError("request_too_large", `A contribution may be at most ${MAX_CONTRIBUTION_BYTES} bytes; this one is ${bytes.byteLength}.`);
  }
  const { nodeId } = await verifyNodeSignature(c, bytes);
  let header: { blockStart: number; blockEnd: number; weight: number; dtype: "float32" | "float16" };
  try {
    header = decodeContribution(bytes, { maxBytes: MAX_CONTRIBUTION_BYTES });
  } catch (err) {
    if (err instanceof TensorFormatError) throw new ApiError("invalid_value", `The contribution is not a valid tensor message: ${err.message}`, { param: err.field });
    throw err;
  }
  const sessionId = c.req.param("id") ?? "";
  const res = await sessionStub(c, sessionId).fetch("https://fedattn/contribute", {
    method: "POST",
    body: bytes,
    headers: { [PARTICIPANT_HEADER]: nodeId },
  });
  if (!res.ok) return refusalOf(res);
  const answer = await res.json<{ status: "received"; total_contributions: number }>();
  const latencyMs = Date.now() - started;
  const deps = c.get("deps");
  observe("switchyard_fedattn_contribution_size_bytes", bytes.byteLength);
  flushMetricsLater(c);
  // The record (never the tensors) goes to Postgres through the outbox; a Redis failure loses only it, logged.
  deps.waitUntil(
    enqueueRecord(deps.redis, deps.settings.redisPrefix, {
      kind: "contribution",
      id: `fc_${crypto.randomUUID().replaceAll("-", "")}`,
      sessionId,
      participant: nodeId,
      blockStart: header.blockStart,
      blockEnd: header.blockEnd,
      sizeBytes: bytes.byteLength,
      dtype: header.dtype,
      latencyMs,
      weight: header.weight,
      at: started,
    }).catch((err: unknown) => deps.log("fedattn_record_lost", { sessionId, participant: nodeId, error: String(err) })),
  );
  return c.json({ status: answer.status, latency_ms: latencyMs, total_contributions: answer.total_contributions });
}

async function aggregateSession(c: Ctx): Promise<Response> {
  const started = Date.now();
  await refuseOperator(c);
  const { nodeId } = await verifyNodeSignature(c, await c.req.text());
  const sessionId = c.req.param("id") ?? "";
  const stub = sessionStub(c, sessionId);
  const query = new URL(c.req.url).search;
  const res = await stub.fetch(`https://fedattn/aggregate${query}`, { method: "POST", headers: { [PARTICIPANT_HEADER]: nodeId } });
  if (!res.ok) return refusalOf(res);
  const headers = new Headers(res.headers);
  // The object's clock stands still while it computes (Workers move time only on I/O), so the sync
  // is timed here: the whole call, less the time spent waiting for the other participants.
  const latencyMs = Math.max(0, Date.now() - started - Number(res.headers.get("x-fedattn-waited-ms") ?? 0));
  headers.set("x-fedattn-sync-latency-ms", String(latencyMs));
  if (res.headers.get("x-fedattn-computed") === "true") {
    const deps = c.get("deps");
    const bytes = Number(res.headers.get("x-fedattn-bytes"));
    observe("switchyard_fedattn_sync_duration_seconds", latencyMs / 1000);
    observe("switchyard_fedattn_aggregate_size_bytes", bytes);
    flushMetricsLater(c);
    deps.waitUntil(stub.recordSyncLatency(latencyMs).catch((err: unknown) => deps.log("fedattn_sync_latency_unrecorded", { sessionId, error: String(err) })));
    deps.log("fedattn_sync", {
      at: new Date(started).toISOString(),
      sessionId,
      sync: Number(res.headers.get("x-fedattn-sync")),
      by: nodeId,
      blockStart: Number(res.headers.get("x-fedattn-block-start")),
      blockEnd: Number(res.headers.get("x-fedattn-block-end")),
      participants: res.headers.get("x-fedattn-participants"),
      missing: res.headers.get("x-fedattn-missing") || null,
      bytes,
      contributionBytes: Number(res.headers.get("x-fedattn-contribution-bytes")),
      latencyMs,
    });
  }
  return new Response(res.body, { headers });
}

/**
 * `GET /sessions/active`: every active session for the operator's admin token; for a signed node,
 * the sessions it takes part in.
 */
async function activeSessions(c: Ctx): Promise<Response> {
  const operator = await isOperator(c);
  const nodeId = operator ? null : (await verifyNodeSignature(c, "")).nodeId;
  const ids = await indexStub(c).list();
  const summaries = await Promise.all(ids.map(async (id) => ({ id, summary: (await sessionStub(c, id).summary()) as SessionSummary | null })));
  // An id whose session is gone (ended while the index was unreachable) is dropped from the index here.
  for (const s of summaries) if (s.summary === null) c.executionCtx.waitUntil(indexStub(c).remove(s.id));
  const sessions = summaries.flatMap((s) => (s.summary && (nodeId === null || s.summary.participants.includes(nodeId)) ? [s.summary] : []));
  return c.json({ object: "list", data: sessions });
}

/** The federated-attention coordinator's API, mounted at /v1/fedattn (docs/fedattn.md). */
export const fedattnRoutes = new Hono<AppEnv>()
  .post("/sessions", createSession)
  .get("/sessions/active", activeSessions)
  .post("/sessions/:id/join", joinSession)
  .post("/sessions/:id/contribute", contribute)
  .post("/sessions/:id/aggregate", aggregateSession)
  .post("/sessions/:id/leave", leaveSession)
  .post("/sessions/:id/end", endSession);
