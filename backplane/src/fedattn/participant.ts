/**
 * A federated-attention participant (docs/fedattn.md, "Participant"): starts or joins a session on
 * the gateway, then per sync reads its engine's K/V for the sync's block range, contributes it,
 * fetches the aggregate and applies it to the engine; finally leaves (or ends) the session.
 */
import { decodeContribution, TensorFormatError } from "../../../schema/contracts/fedattn-tensors.ts";
import { applyAggregate, checkKvEngine, fetchKv, type KvEngine } from "./engine.ts";
import { FedattnError } from "./errors.ts";
import { createFedattnGateway, type FedattnGateway } from "./gateway.ts";
import { KvShapeError, kvShape } from "./kv.ts";

/** What runParticipant takes; everything but the node, gateway, engine and prompt has a default. */
export interface ParticipantOptions {
  gatewayUrl: string;
  nodeId: string;
  /** The node's signing secret (BACKPLANE_SECRET). */
  secret: string;
  /** The engine to read K/V from and apply aggregates to (only kind=sim can, today). */
  engine: KvEngine;
  /** Join this session; absent: start one. */
  sessionId?: string;
  /** Blocks per sync of a session this node starts (1..1024, default 8); a joined session's own interval is used. */
  syncInterval?: number;
  /** privacy_mode of a session this node starts (default true). */
  privacyMode?: boolean;
  /** Before the first sync, wait until the session has this many participants (default: do not wait). */
  waitFor?: number;
  /** How long to wait for them (default 120000 ms). */
  waitTimeoutMs?: number;
  /** Transformer blocks of the model; syncs cover [0, H-1], [H, 2H-1], … up to blocks-1 (default 32). */
  blocks?: number;
  /** Syncs to run (default: all the ranges in `blocks`). */
  syncs?: number;
  /** This node's prompt; it never leaves the node, only its K/V do. */
  prompt: string;
  /** The model whose K/V to read (default the engine's first generate model). */
  model?: string;
  /** Dims of one block's K and V (default the engine's; the simulator's is 16x64). */
  shape?: readonly number[];
  /** This node's weight in the average (default 1). */
  weight?: number;
  /** How long the gateway may wait for every participant's contribution per sync (wait_ms, 0..60000, default 30000). */
  aggregateWaitMs?: number;
  /** End the session for everyone when done, instead of leaving it. */
  end?: boolean;
  /** Deadline of each call to the gateway and the engine (default 30000 ms; aggregate adds its wait). */
  requestTimeoutMs?: number;
  /** How often to poll while waiting for participants (default 250 ms). */
  pollIntervalMs?: number;
  fetch?: typeof fetch;
  /** Progress events (default: none). */
  log?: (event: string, fields: Record<string, unknown>) => void;
}

/** One sync as this participant saw it. */
export interface SyncResult {
  /** The session's sync number (x-fedattn-sync). */
  sync: number | null;
  blockStart: number;
  blockEnd: number;
  /** Who went into the aggregate (x-fedattn-participants). */
  participants: string[];
  /** Participants that had not contributed when the gateway's wait ran out (x-fedattn-missing). */
  missing: string[];
  /** The coordinator's time for the aggregate (x-fedattn-sync-latency-ms). */
  syncLatencyMs: number | null;
  /** Size of the aggregate message (x-fedattn-bytes, else the body's length). */
  bytes: number;
  /** Size of this node's contribution. */
  contributedBytes: number;
  /** The aggregate's weight (the sum of the weights that went in). */
  weight: number;
  /** The engine's checksums of the applied aggregate. */
  kChecksum: number;
  vChecksum: number;
}

/** What a run did. */
export interface ParticipantSummary {
  sessionId: string;
  nodeId: string;
  role: "initiator" | "participant";
  syncInterval: number;
  syncs: SyncResult[];
  /** How it finished: left (the session may go on) or ended. */
  finish: { status: "left" | "ended"; participants: string[]; sessionStatus: "active" | "ended" };
}

/** A session as `GET /v1/fedattn/sessions/active` lists it (the fields a participant reads). */
export interface ActiveSession {
  session_id: string;
  status: string;
  initiator: string;
  participants: string[];
  sync_interval: number;
  privacy_mode: boolean;
  total_syncs: number;
  average_sync_latency_ms: number | null;
  pending_contributions: number;
}

/** The block ranges of `blocks` blocks synced every `syncInterval`: [0, H-1], [H, 2H-1], …, the last one possibly shorter. */
export function blockRanges(blocks: number, syncInterval: number): [number, number][] {
  const ranges: [number, number][] = [];
  for (let start = 0; start < blocks; start += syncInterval) ranges.push([start, Math.min(start + syncInterval, blocks) - 1]);
  return ranges;
}

function invalid(message: string): FedattnError {
  return new FedattnError("invalid_options", message);
}

function checkInt(name: string, value: number | undefined, min: number, max: number): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) throw invalid(`${name} must be an integer in ${min}..${max}, got ${value}`);
}

function checkOptions(o: ParticipantOptions): void {
  checkInt("syncInterval", o.syncInterval, 1, 1024);
  checkInt("waitFor", o.waitFor, 1, 1024);
  checkInt("blocks", o.blocks, 1, 1_000_000);
  checkInt("syncs", o.syncs, 1, 1_000_000);
  checkInt("aggregateWaitMs", o.aggregateWaitMs, 0, 60_000);
  if (o.weight !== undefined && (!Number.isFinite(o.weight) || o.weight < 0)) throw invalid(`weight must be a finite number >= 0, got ${o.weight}`);
  if (o.prompt === "") throw invalid("prompt must not be empty: it is what this node's K/V are computed from");
  if (o.shape !== undefined) {
    try {
      kvShape(0, 0, o.shape);
    } catch (err) {
      if (err instanceof KvShapeError) throw invalid(err.message);
      throw err;
    }
  }
  checkKvEngine(o.engine);
}

/** The active sessions this node takes part in (signed GET /v1/fedattn/sessions/active). */
export async function activeSessions(gateway: FedattnGateway, timeoutMs: number): Promise<ActiveSession[]> {
  const res = await gateway.call("GET", "/v1/fedattn/sessions/active", null, timeoutMs);
  return ((await res.json()) as { data: ActiveSession[] }).data;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function list(header: string | null): string[] {
  return (header ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}

function numberHeader(header: string | null): number | null {
  return header === null || header === "" || !Number.isFinite(Number(header)) ? null : Number(header);
}

/** Starts or joins; the session id, this node's role, and the sync interval when it started the session (null: read it, sessionInterval). */
async function enter(gateway: FedattnGateway, o: ParticipantOptions, timeoutMs: number): Promise<{ sessionId: string; role: ParticipantSummary["role"]; syncInterval: number | null }> {
  if (o.sessionId === undefined) {
    const body = { initiator_node: o.nodeId, sync_interval: o.syncInterval ?? 8, privacy_mode: o.privacyMode ?? true };
    const res = await gateway.call("POST", "/v1/fedattn/sessions", { json: body }, timeoutMs);
    const started = (await res.json()) as { session_id: string; sync_interval: number };
    o.log?.("fedattn_session_started", { sessionId: started.session_id, syncInterval: started.sync_interval });
    return { sessionId: started.session_id, role: "initiator", syncInterval: started.sync_interval };
  }
  await gateway.call("POST", `/v1/fedattn/sessions/${encodeURIComponent(o.sessionId)}/join`, { json: { participant_node: o.nodeId } }, timeoutMs);
  return { sessionId: o.sessionId, role: "participant", syncInterval: null };
}

/** The sync interval of a joined session, from the active list (the join answer does not carry it). */
async function sessionInterval(gateway: FedattnGateway, sessionId: string, o: ParticipantOptions, timeoutMs: number): Promise<number> {
  const session = (await activeSessions(gateway, timeoutMs)).find((s) => s.session_id === sessionId);
  if (session === undefined) throw new FedattnError("gateway_error", `Joined session ${sessionId}, but the gateway no longer lists it as active (it ended or expired).`);
  o.log?.("fedattn_session_joined", { sessionId, syncInterval: session.sync_interval, participants: session.participants });
  if (o.syncInterval !== undefined && o.syncInterval !== session.sync_interval) {
    throw invalid(`Session ${sessionId} syncs every ${session.sync_interval} blocks, not ${o.syncInterval}: leave out the sync interval when joining.`);
  }
  return session.sync_interval;
}

/** Polls the active list until the session has `count` participants, within `timeoutMs`. */
async function waitForParticipants(gateway: FedattnGateway, sessionId: string, count: number, o: ParticipantOptions, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + (o.waitTimeoutMs ?? 120_000);
  let seen: string[];
  for (;;) {
    const session = (await activeSessions(gateway, timeoutMs)).find((s) => s.session_id === sessionId);
    if (session === undefined) throw new FedattnError("gateway_error", `Session ${sessionId} ended or expired while waiting for ${count} participants.`);
    seen = session.participants;
    if (seen.length >= count) return;
    if (Date.now() >= deadline) break;
    await sleep(Math.min(o.pollIntervalMs ?? 250, Math.max(0, deadline - Date.now())));
  }
  throw new FedattnError("timeout", `Session ${sessionId} has ${seen.length} of the ${count} participants waited for after ${o.waitTimeoutMs ?? 120_000} ms (${seen.join(", ")}). Have the others join with --session ${sessionId}, or wait longer (--wait-timeout-ms).`);
}

/** One sync: K/V from the engine, contribute, aggregate (waiting for the others), apply. */
async function sync(gateway: FedattnGateway, sessionId: string, range: [number, number], o: ParticipantOptions, timeoutMs: number): Promise<SyncResult> {
  const [blockStart, blockEnd] = range;
  const fetchFn = o.fetch ?? fetch;
  const kv = await fetchKv(o.engine, { prompt: o.prompt, model: o.model, blockStart, blockEnd, shape: o.shape, weight: o.weight ?? 1 }, timeoutMs, fetchFn);
  const id = encodeURIComponent(sessionId);
  await gateway.call("POST", `/v1/fedattn/sessions/${id}/contribute`, { bytes: kv }, timeoutMs);
  const waitMs = o.aggregateWaitMs ?? 30_000;
  const res = await gateway.call("POST", `/v1/fedattn/sessions/${id}/aggregate?block_start=${blockStart}&block_end=${blockEnd}&wait_ms=${waitMs}`, null, timeoutMs + waitMs);
  const message = new Uint8Array(await res.arrayBuffer());
  let weight: number;
  try {
    const aggregate = decodeContribution(message);
    if (aggregate.blockStart !== blockStart || aggregate.blockEnd !== blockEnd) {
      throw new FedattnError("gateway_error", `Asked the aggregate of blocks ${blockStart}-${blockEnd}, got ${aggregate.blockStart}-${aggregate.blockEnd}.`);
    }
    weight = aggregate.weight;
  } catch (err) {
    if (err instanceof TensorFormatError) throw new FedattnError("gateway_error", `The gateway's aggregate of blocks ${blockStart}-${blockEnd} is not a valid tensor message: ${err.message}`);
    throw err;
  }
  const applied = await applyAggregate(o.engine, message, timeoutMs, fetchFn);
  const result: SyncResult = {
    sync: numberHeader(res.headers.get("x-fedattn-sync")),
    blockStart,
    blockEnd,
    participants: list(res.headers.get("x-fedattn-participants")),
    missing: list(res.headers.get("x-fedattn-missing")),
    syncLatencyMs: numberHeader(res.headers.get("x-fedattn-sync-latency-ms")),
    bytes: numberHeader(res.headers.get("x-fedattn-bytes")) ?? message.byteLength,
    contributedBytes: kv.byteLength,
    weight,
    ...applied,
  };
  o.log?.("fedattn_sync", { sessionId, ...result });
  return result;
}

/** Leaves the session, or ends it for everyone with `end`. */
async function finish(gateway: FedattnGateway, sessionId: string, o: ParticipantOptions, timeoutMs: number): Promise<ParticipantSummary["finish"]> {
  const id = encodeURIComponent(sessionId);
  if (o.end === true) {
    const res = await gateway.call("POST", `/v1/fedattn/sessions/${id}/end`, { json: {} }, timeoutMs);
    const ended = (await res.json()) as { participants: string[] };
    return { status: "ended", participants: ended.participants, sessionStatus: "ended" };
  }
  const res = await gateway.call("POST", `/v1/fedattn/sessions/${id}/leave`, { json: { participant_node: o.nodeId } }, timeoutMs);
  const left = (await res.json()) as { participants: string[]; session_status: "active" | "ended" };
  return { status: "left", participants: left.participants, sessionStatus: left.session_status };
}

/**
 * Runs one participant from start (or join) to leave (or end). Every gateway call is signed as the
 * node; every call has a deadline. On a failure after entering the session it leaves the session
 * (best effort, so the others' syncs are not held up waiting for it), then throws the FedattnError.
 */
export async function runParticipant(o: ParticipantOptions): Promise<ParticipantSummary> {
  checkOptions(o);
  const timeoutMs = o.requestTimeoutMs ?? 30_000;
  const gateway = createFedattnGateway(o.gatewayUrl, o.nodeId, o.secret, o.fetch ?? fetch);
  const entered = await enter(gateway, o, timeoutMs);
  const { sessionId, role } = entered;
  try {
    const syncInterval = entered.syncInterval ?? (await sessionInterval(gateway, sessionId, o, timeoutMs));
    const ranges = blockRanges(o.blocks ?? 32, syncInterval);
    if (o.syncs !== undefined && o.syncs > ranges.length) {
      throw invalid(`${o.blocks ?? 32} blocks synced every ${syncInterval} make ${ranges.length} syncs, not ${o.syncs}: raise the block count or lower the syncs.`);
    }
    if (o.waitFor !== undefined) await waitForParticipants(gateway, sessionId, o.waitFor, o, timeoutMs);
    const syncs: SyncResult[] = [];
    for (const range of ranges.slice(0, o.syncs ?? ranges.length)) syncs.push(await sync(gateway, sessionId, range, o, timeoutMs));
    const done = await finish(gateway, sessionId, o, timeoutMs);
    o.log?.(done.status === "ended" ? "fedattn_session_ended" : "fedattn_session_left", { sessionId, participants: done.participants, sessionStatus: done.sessionStatus });
    return { sessionId, nodeId: o.nodeId, role, syncInterval, syncs, finish: done };
  } catch (err) {
    await gateway.call("POST", `/v1/fedattn/sessions/${encodeURIComponent(sessionId)}/leave`, { json: { participant_node: o.nodeId } }, Math.min(timeoutMs, 5_000)).then(
      () => o.log?.("fedattn_left_after_error", { sessionId }),
      (leaveErr: unknown) => o.log?.("fedattn_leave_failed", { sessionId, error: leaveErr instanceof Error ? leaveErr.message : String(leaveErr) }),
    );
    throw err;
  }
}
