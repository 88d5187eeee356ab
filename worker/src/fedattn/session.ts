import { DurableObject } from "cloudflare:workers";
import { aggregate, AggregateError, blockRangeKey, type ParticipantContribution } from "../../../schema/contracts/fedattn-aggregate.ts";
import { decodeContribution, encodeContribution, type Contribution } from "../../../schema/contracts/fedattn-tensors.ts";
import { redisFrom } from "../platform/redis.ts";
import { settingsFrom } from "../settings.ts";
import { enqueueRecord, type SessionSnapshot } from "./records.ts";
import { MAX_WAIT_MS, PARTICIPANT_HEADER, refuse, type CreateInput, type SessionOutcome, type SessionRefusal, type SessionSummary } from "./state.ts";

/** The session's settings and counters, also kept in storage so an evicted object keeps its session. */
interface SessionMeta {
  id: string;
  initiator: string;
  participants: string[];
  syncInterval: number;
  privacyMode: boolean;
  idleTimeoutMs: number;
  startedAt: number;
  lastActivityAt: number;
  totalSyncs: number;
  /** Syncs whose latency the gateway reported, and their total. */
  timedSyncs: number;
  syncLatencyTotalMs: number;
  /** Participants that left while the session went on (a node that joins again is taken off). */
  departed: string[];
  /** Every node that has taken part, in the order they joined. */
  joined: string[];
  /** Rises with every change; the Postgres row takes a snapshot only when it is newer (records.ts). */
  version: number;
}

/** An aggregate computed and kept until every participant that went into it has fetched it. */
interface Result {
  range: string;
  sync: number;
  body: Uint8Array;
  /** Bytes of the contributions that went in. */
  contributionBytes: number;
  participants: string[];
  missing: string[];
  undelivered: Set<string>;
}

interface Pending {
  participant: string;
  range: string;
  bytes: Uint8Array;
  contribution: Contribution;
}

const META_KEY = "meta";
/** A snapshot that Redis did not take, kept for the next try (only the newest matters). */
const UNSENT_KEY = "unsent";
/** How soon an unsent snapshot is tried again, and for how long before it is given up (logged). */
const RETRY_MS = 30_000;
const GIVE_UP_MS = 24 * 3600_000;
/** Results kept per block range for participants that have not fetched them yet. */
const MAX_RESULTS_PER_RANGE = 8;
const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

function refusalResponse(r: SessionRefusal, status: number): Response {
  return Response.json(r, { status });
}

/**
 * One federated-attention session (`idFromName(session_id)`): its participants and settings, and
 * the contributions of the current sync as they were received (bytes plus their decoded views),
 * in memory. Durable Objects run one request at a time per object, so every call sees and changes
 * one consistent state, whichever isolate or region the participants reach. The metadata is also
 * written to storage (a session survives the object's eviction between syncs); the tensors are not
 * (they live for one sync). An alarm ends the session once it has been idle for its timeout.
 *
 * The JSON calls are RPC methods; contribute and aggregate go through `fetch`, so bodies of tens of
 * megabytes stream instead of passing through RPC's message size limit.
 */
export class FedattnSession extends DurableObject<Env> {
  private meta: SessionMeta | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly results: Result[] = [];
  /** Aggregate calls waiting for the other participants: woken by every contribution and departure. */
  private readonly waiters = new Set<() => void>();
  private unsent: { snapshot: SessionSnapshot; since: number } | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.meta = (await ctx.storage.get<SessionMeta>(META_KEY)) ?? null;
      this.unsent = (await ctx.storage.get<{ snapshot: SessionSnapshot; since: number }>(UNSENT_KEY)) ?? null;
    });
  }

  /** Starts the session; refused when this id already has one. */
  async create(input: CreateInput): Promise<SessionOutcome<{ summary: SessionSummary }>> {
    if (this.meta) return refuse("conflict", `Session ${input.sessionId} already exists.`);
    const now = Date.now();
    this.meta = {
      id: input.sessionId,
      initiator: input.initiator,
      participants: [input.initiator],
      syncInterval: input.syncInterval,
      privacyMode: input.privacyMode,
      idleTimeoutMs: input.idleTimeoutSeconds * 1000,
      startedAt: now,
      lastActivityAt: now,
      totalSyncs: 0,
      timedSyncs: 0,
      syncLatencyTotalMs: 0,
      departed: [],
      joined: [input.initiator],
      version: 0,
    };
    await this.save();
    await this.ctx.storage.setAlarm(now + this.meta.idleTimeoutMs);
    return { ok: true, summary: this.summaryOf(this.meta) };
  }

  /** Adds a participant; joining twice changes nothing. */
  async join(node: string): Promise<SessionOutcome<{ participants: string[] }>> {
    const meta = this.meta;
    if (!meta) return this.unknown();
    if (!meta.participants.includes(node)) {
      const max = settingsFrom(this.env).fedattnMaxParticipants;
      if (meta.participants.length >= max) return refuse("session_full", `This session already has ${max} participants (FEDATTN_MAX_PARTICIPANTS); start another session.`);
      meta.participants.push(node);
      meta.departed = meta.departed.filter((d) => d !== node);
      if (!meta.joined.includes(node)) meta.joined.push(node);
    }
    meta.lastActivityAt = Date.now();
    await this.save();
    return { ok: true, participants: [...meta.participants] };
  }

  /** Ends the session (by one of its participants); its pending contributions are dropped. */
  async end(node: string): Promise<SessionOutcome<{ durationSeconds: number; participants: string[] }>> {
    const meta = this.meta;
    if (!meta) return this.unknown();
    if (!meta.participants.includes(node)) return this.notParticipant(node);
    const durationSeconds = (Date.now() - meta.startedAt) / 1000;
    await this.finish("ended");
    return { ok: true, durationSeconds, participants: meta.participants };
  }

  /**
   * Takes a participant out: its pending contributions and the aggregates it had not fetched are
   * dropped, and calls waiting for it stop waiting. The session goes on with the others; the last
   * participant leaving ends it. Leaving a session one is not in is refused.
   */
  async leave(node: string): Promise<SessionOutcome<{ participants: string[]; sessionStatus: "active" | "ended" }>> {
    const meta = this.meta;
    if (!meta) return this.unknown();
    if (!meta.participants.includes(node)) return this.notParticipant(node);
    meta.participants = meta.participants.filter((p) => p !== node);
    // The last one out ends the session: it was there at the end, so it has not departed.
    if (meta.participants.length > 0 && !meta.departed.includes(node)) meta.departed.push(node);
    for (const [key, p] of this.pending) if (p.participant === node) this.pending.delete(key);
    for (const r of this.results) r.undelivered.delete(node);
    this.dropDelivered();
    this.wake();
    if (meta.participants.length === 0) {
      await this.finish("ended");
      return { ok: true, participants: [], sessionStatus: "ended" };
    }
    meta.lastActivityAt = Date.now();
    await this.save();
    return { ok: true, participants: [...meta.participants], sessionStatus: "active" };
  }

  /** The gateway's measure of one sync's coordinator time (the object's clock does not move while it computes). */
  async recordSyncLatency(latencyMs: number): Promise<void> {
    const meta = this.meta;
    if (!meta || !Number.isFinite(latencyMs) || latencyMs < 0) return;
    meta.timedSyncs += 1;
    meta.syncLatencyTotalMs += latencyMs;
    await this.save();
  }

  /** The session as listed, or null when this id has no active session. */
  summary(): SessionSummary | null {
    return this.meta ? this.summaryOf(this.meta) : null;
  }

  /** Ends the session when it has been idle for its timeout; otherwise looks again when it would be. */
  override async alarm(): Promise<void> {
    if (this.unsent) await this.sendUnsent();
    const meta = this.meta;
    if (!meta) return;
    const due = meta.lastActivityAt + meta.idleTimeoutMs;
    if (Date.now() < due) {
      await this.ctx.storage.setAlarm(this.unsent ? Math.min(due, Date.now() + RETRY_MS) : due);
      return;
    }
    console.log(JSON.stringify({ event: "fedattn_session_expired", at: new Date().toISOString(), sessionId: meta.id, idleSeconds: (Date.now() - meta.lastActivityAt) / 1000 }));
    await this.finish("expired");
  }

  /** `POST /contribute` (body: one message) and `POST /aggregate[?block_start=&block_end=]`, for a participant named in PARTICIPANT_HEADER. */
  override async fetch(request: Request): Promise<Response> {
    const meta = this.meta;
    if (!meta) return refusalResponse(this.unknown(), 404);
    const node = request.headers.get(PARTICIPANT_HEADER) ?? "";
    if (!meta.participants.includes(node)) return refusalResponse(this.notParticipant(node), 403);
    meta.lastActivityAt = Date.now();
    const url = new URL(request.url);
    if (url.pathname === "/contribute") return this.contribute(node, new Uint8Array(await request.arrayBuffer()));
    return this.aggregateFor(node, url.searchParams);
  }

  private contribute(node: string, bytes: Uint8Array): Response {
    const started = Date.now();
    // The route has decoded the message once already (and refused a malformed one); the views are
    // made again here over this object's own copy of the bytes.
    const contribution = decodeContribution(bytes);
    const range = blockRangeKey(contribution);
    const key = `${node}\n${range}`;
    if (this.pending.has(key)) {
      return refusalResponse(refuse("duplicate_contribution", `${node} already sent blocks ${range} for this sync; wait for the aggregate before sending them again.`), 409);
    }
    const held = [...this.pending.values()].reduce((n, p) => n + p.bytes.byteLength, 0);
    const max = settingsFrom(this.env).fedattnMaxPendingBytes;
    if (held + bytes.byteLength > max) {
      return refusalResponse(
        refuse(
          "request_too_large",
          `This session holds ${mib(held)} MiB of contributions waiting for their aggregate, and this one (${mib(bytes.byteLength)} MiB) would pass its ${mib(max)} MiB (FEDATTN_MAX_PENDING_MB): ask for the aggregate of the pending ranges first, or send smaller block ranges.`,
        ),
        413,
      );
    }
    // Checked on arrival, so one wrong participant is refused at once and the others' sync goes on.
    for (const other of this.pending.values()) {
      if (other.range !== range) continue;
      for (const tensor of ["k", "v"] as const) {
        const mine = contribution[tensor].shape;
        const theirs = other.contribution[tensor].shape;
        if (!sameShape(mine, theirs)) {
          return refusalResponse(
            refuse("shape_mismatch", `${node}'s ${tensor.toUpperCase()} for blocks ${range} has shape [${mine.join(", ")}], but ${other.participant} sent [${theirs.join(", ")}].`, tensor),
            400,
          );
        }
      }
    }
    this.pending.set(key, { participant: node, range, bytes, contribution });
    this.wake();
    return Response.json({ status: "received", latency_ms: Date.now() - started, total_contributions: this.pending.size });
  }

  /**
   * The aggregate for `node`: one it is owed (its contribution went into a sync another participant
   * triggered), or the average of what is pending for the range, computed now. With `wait_ms` the
   * call first waits (at most that long) until every participant has contributed to the range; past
   * the wait it averages what is there and names who was missing.
   */
  private async aggregateFor(node: string, query: URLSearchParams): Promise<Response> {
    const start = query.get("block_start");
    const end = query.get("block_end");
    const named = start !== null || end !== null ? `${start ?? ""}-${end ?? ""}` : null;
    const waitRaw = query.get("wait_ms");
    const waitMs = waitRaw === null ? 0 : Number(waitRaw);
    if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > MAX_WAIT_MS) {
      return refusalResponse(refuse("invalid_value", `wait_ms must be a whole number of milliseconds from 0 to ${MAX_WAIT_MS}.`, "wait_ms"), 400);
    }
    const began = Date.now();
    const owed = this.results.filter((r) => r.undelivered.has(node)).map((r) => r.range);
    const pendingRanges = [...new Set([...this.pending.values()].map((p) => p.range))];
    let range: string;
    if (named !== null) {
      range = named;
      if (!owed.includes(range) && !pendingRanges.includes(range)) {
        return refusalResponse(refuse("no_contributions", `No contributions are pending for blocks ${range}; pending: ${pendingRanges.join(", ") || "none"}.`, "block_start"), 400);
      }
    } else {
      const candidates = [...new Set([...owed, ...pendingRanges])];
      if (candidates.length === 0) return refusalResponse(refuse("no_contributions", "No contributions are pending in this session: contribute before asking for the aggregate."), 400);
      if (candidates.length > 1) {
        return refusalResponse(refuse("invalid_value", `Several block ranges are pending (${candidates.join(", ")}): name one with ?block_start=&block_end=.`, "block_start"), 400);
      }
      range = candidates[0] ?? "";
    }
    const deadline = began + waitMs;
    for (;;) {
      const result = this.results.find((r) => r.range === range && r.undelivered.has(node));
      if (result) return this.deliver(result, node, false, Date.now() - began);
      const meta = this.meta;
      if (!meta) return refusalResponse(this.unknown(), 404);
      if (!meta.participants.includes(node)) return refusalResponse(this.notParticipant(node), 403);
      // Privacy mode: an aggregate is only for those whose contribution is in it.
      if (meta.privacyMode && !this.pending.has(`${node}\n${range}`)) {
        return refusalResponse(
          refuse("permission_denied", `This session is in privacy mode: only participants that contributed blocks ${range} to this sync receive its aggregate. Contribute first.`),
          403,
        );
      }
      const missing = meta.participants.filter((p) => !this.pending.has(`${p}\n${range}`));
      if (missing.length === 0 || Date.now() >= deadline) return this.computeRange(meta, node, range, missing, Date.now() - began);
      await this.sleepUntilWoken(deadline - Date.now());
    }
  }

  private computeRange(meta: SessionMeta, node: string, range: string, missing: string[], waitedMs: number): Response {
    const all = [...this.pending.values()];
    const chosen = all.filter((p) => p.range === range);
    if (chosen.length === 0) return refusalResponse(refuse("no_contributions", `No contributions are pending for blocks ${range}.`, "block_start"), 400);
    // Every participant with something pending must have sent the same ranges (as aggregate() rules).
    const rangesOf = new Map<string, Set<string>>();
    for (const p of all) (rangesOf.get(p.participant) ?? rangesOf.set(p.participant, new Set()).get(p.participant))?.add(p.range);
    const without = [...rangesOf].find(([, set]) => !set.has(range));
    if (without) {
      return refusalResponse(refuse("unmatched_block_range", `Blocks ${range} were sent by ${chosen.map((p) => p.participant).join(", ")} but not by ${without[0]}.`, "block_start"), 400);
    }
    let body: Uint8Array;
    try {
      const inputs: ParticipantContribution[] = chosen.map((p) => ({ participant: p.participant, contribution: p.contribution }));
      const [aggregated] = aggregate(inputs);
      if (!aggregated) return refusalResponse(refuse("no_contributions", "Nothing to aggregate."), 400);
      body = encodeContribution(aggregated);
    } catch (err) {
      if (err instanceof AggregateError) return refusalResponse(refuse(err.code, err.message, err.participant ?? null), err.code === "duplicate_contribution" ? 409 : 400);
      throw err;
    }
    for (const p of chosen) this.pending.delete(`${p.participant}\n${p.range}`);
    meta.totalSyncs += 1;
    const participants = chosen.map((p) => p.participant);
    const contributionBytes = chosen.reduce((n, p) => n + p.bytes.byteLength, 0);
    const result: Result = { range, sync: meta.totalSyncs, body, contributionBytes, participants, missing: missing.filter((m) => !participants.includes(m)), undelivered: new Set(participants) };
    this.results.push(result);
    const ofRange = this.results.filter((r) => r.range === range);
    if (ofRange.length > MAX_RESULTS_PER_RANGE && ofRange[0]) this.results.splice(this.results.indexOf(ofRange[0]), 1);
    this.ctx.waitUntil(this.save());
    // Others waiting on this range find the result now.
    this.wake();
    return this.deliver(result, node, true, waitedMs);
  }

  private deliver(result: Result, node: string, computed: boolean, waitedMs: number): Response {
    result.undelivered.delete(node);
    this.dropDelivered();
    const [blockStart = "", blockEnd = ""] = result.range.split("-");
    return new Response(result.body, {
      headers: {
        "content-type": "application/octet-stream",
        "x-fedattn-participants": result.participants.join(","),
        "x-fedattn-missing": result.missing.join(","),
        "x-fedattn-sync": String(result.sync),
        "x-fedattn-block-start": blockStart,
        "x-fedattn-block-end": blockEnd,
        "x-fedattn-bytes": String(result.body.byteLength),
        "x-fedattn-contribution-bytes": String(result.contributionBytes),
        "x-fedattn-computed": String(computed),
        "x-fedattn-waited-ms": String(waitedMs),
        "x-fedattn-pending-ranges": String(new Set([...this.pending.values()].map((p) => p.range)).size),
      },
    });
  }

  private dropDelivered(): void {
    for (let i = this.results.length - 1; i >= 0; i--) if (this.results[i]?.undelivered.size === 0) this.results.splice(i, 1);
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const w of waiting) w();
  }

  /** Resolves on the next wake() or after `ms`, whichever comes first; its timer is always cleared. */
  private sleepUntilWoken(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(1, ms));
      this.waiters.add(done);
    });
  }

  private summaryOf(meta: SessionMeta): SessionSummary {
    const pending = [...this.pending.values()].map((p) => ({ participant: p.participant, block_start: p.contribution.blockStart, block_end: p.contribution.blockEnd, bytes: p.bytes.byteLength }));
    return {
      session_id: meta.id,
      status: "active",
      initiator: meta.initiator,
      participants: [...meta.participants],
      departed: [...meta.departed],
      sync_interval: meta.syncInterval,
      privacy_mode: meta.privacyMode,
      started_at: new Date(meta.startedAt).toISOString(),
      last_activity_at: new Date(meta.lastActivityAt).toISOString(),
      pending_contributions: pending.length,
      pending,
      total_syncs: meta.totalSyncs,
      average_sync_latency_ms: meta.timedSyncs > 0 ? meta.syncLatencyTotalMs / meta.timedSyncs : null,
    };
  }

  /** Stores the metadata and queues its snapshot for Postgres (records.ts). */
  private async save(): Promise<void> {
    const meta = this.meta;
    if (!meta) return;
    meta.version += 1;
    await this.ctx.storage.put(META_KEY, meta);
    this.ctx.waitUntil(this.report(this.snapshotOf(meta, "active", null)));
  }

  private snapshotOf(meta: SessionMeta, status: SessionSnapshot["status"], endedAt: number | null): SessionSnapshot {
    return {
      kind: "session",
      id: meta.id,
      initiator: meta.initiator,
      participants: [...meta.joined],
      departed: [...meta.departed],
      syncInterval: meta.syncInterval,
      privacyMode: meta.privacyMode,
      startedAt: meta.startedAt,
      endedAt,
      totalSyncs: meta.totalSyncs,
      averageSyncLatencyMs: meta.timedSyncs > 0 ? meta.syncLatencyTotalMs / meta.timedSyncs : null,
      status,
      version: meta.version,
      updatedAt: Date.now(),
    };
  }

  /**
   * Queues a snapshot in Redis. When Redis does not take it (down, or past REDIS_TIMEOUT_MS), it is
   * kept in storage and tried again by the alarm every RETRY_MS; a newer snapshot replaces it (each
   * is complete). One that could not be sent for GIVE_UP_MS is dropped, logged.
   */
  private async report(snapshot: SessionSnapshot): Promise<void> {
    const settings = settingsFrom(this.env);
    try {
      await enqueueRecord(redisFrom(this.env.UPSTASH_REDIS_REST_URL, this.env.UPSTASH_REDIS_REST_TOKEN, settings.redisTimeoutMs), settings.redisPrefix, snapshot);
      if (this.unsent && this.unsent.snapshot.version <= snapshot.version) {
        this.unsent = null;
        await this.ctx.storage.delete(UNSENT_KEY);
      }
    } catch (err) {
      if (this.unsent && this.unsent.snapshot.version > snapshot.version) return;
      this.unsent = { snapshot, since: this.unsent?.since ?? Date.now() };
      await this.ctx.storage.put(UNSENT_KEY, this.unsent);
      const alarm = await this.ctx.storage.getAlarm();
      if (alarm === null || alarm > Date.now() + RETRY_MS) await this.ctx.storage.setAlarm(Date.now() + RETRY_MS);
      console.log(JSON.stringify({ event: "fedattn_record_deferred", at: new Date().toISOString(), sessionId: snapshot.id, version: snapshot.version, error: err instanceof Error ? err.message : String(err) }));
    }
  }

  private async sendUnsent(): Promise<void> {
    const unsent = this.unsent;
    if (!unsent) return;
    if (Date.now() - unsent.since > GIVE_UP_MS) {
      console.log(JSON.stringify({ event: "fedattn_record_lost", at: new Date().toISOString(), sessionId: unsent.snapshot.id, version: unsent.snapshot.version }));
      this.unsent = null;
      await this.ctx.storage.delete(UNSENT_KEY);
    } else {
      await this.report(unsent.snapshot);
    }
    if (!this.meta && !this.unsent) await this.ctx.storage.deleteAll();
  }

  /**
   * Forgets the session (memory, storage, alarm), takes it out of the index and reports its end.
   * Only an end snapshot Redis did not take stays in storage, with the alarm that retries it.
   */
  private async finish(status: "ended" | "expired"): Promise<void> {
    const meta = this.meta;
    this.meta = null;
    this.pending.clear();
    this.results.length = 0;
    this.wake();
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.unsent = null;
    if (!meta) return;
    meta.version += 1;
    await this.report(this.snapshotOf(meta, status, Date.now()));
    await this.env.FEDATTN_INDEX.get(this.env.FEDATTN_INDEX.idFromName("index")).remove(meta.id);
  }

  private unknown(): SessionRefusal {
    return refuse("not_found", "No active federated-attention session has this id (it never existed, ended, or expired after being idle).");
  }

  private notParticipant(node: string): SessionRefusal {
    return refuse("permission_denied", `Node ${node || "(none)"} is not a participant of this session; join it first.`);
  }
}
