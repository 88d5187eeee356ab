import { DurableObject } from "cloudflare:workers";
import { aggregate, AggregateError, blockRangeKey, type ParticipantContribution } from "../../../schema/contracts/fedattn-aggregate.ts";
import { decodeContribution, encodeContribution, type Contribution } from "../../../schema/contracts/fedattn-tensors.ts";
import { PARTICIPANT_HEADER, refuse, type CreateInput, type SessionOutcome, type SessionRefusal, type SessionSummary } from "./state.ts";

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
  syncLatencyTotalMs: number;
}

interface Pending {
  participant: string;
  range: string;
  bytes: Uint8Array;
  contribution: Contribution;
}

const META_KEY = "meta";
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

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.meta = (await ctx.storage.get<SessionMeta>(META_KEY)) ?? null;
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
      syncLatencyTotalMs: 0,
    };
    await this.save();
    await this.ctx.storage.setAlarm(now + this.meta.idleTimeoutMs);
    return { ok: true, summary: this.summaryOf(this.meta) };
  }

  /** Adds a participant; joining twice changes nothing. */
  async join(node: string): Promise<SessionOutcome<{ participants: string[] }>> {
    const meta = this.meta;
    if (!meta) return this.unknown();
    if (!meta.participants.includes(node)) meta.participants.push(node);
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
    await this.finish();
    return { ok: true, durationSeconds, participants: meta.participants };
  }

  /** The session as listed, or null when this id has no active session. */
  summary(): SessionSummary | null {
    return this.meta ? this.summaryOf(this.meta) : null;
  }

  /** Ends the session when it has been idle for its timeout; otherwise looks again when it would be. */
  override async alarm(): Promise<void> {
    const meta = this.meta;
    if (!meta) return;
    const due = meta.lastActivityAt + meta.idleTimeoutMs;
    if (Date.now() < due) {
      await this.ctx.storage.setAlarm(due);
      return;
    }
    console.log(JSON.stringify({ event: "fedattn_session_expired", at: new Date().toISOString(), sessionId: meta.id, idleSeconds: (Date.now() - meta.lastActivityAt) / 1000 }));
    await this.finish();
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
    return this.aggregatePending(meta, url.searchParams);
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
    return Response.json({ status: "received", latency_ms: Date.now() - started, total_contributions: this.pending.size });
  }

  private aggregatePending(meta: SessionMeta, query: URLSearchParams): Response {
    const started = Date.now();
    const all = [...this.pending.values()];
    if (all.length === 0) return refusalResponse(refuse("no_contributions", "No contributions are pending in this session: contribute before asking for the aggregate."), 400);
    const ranges = [...new Set(all.map((p) => p.range))];
    let range: string;
    const start = query.get("block_start");
    const end = query.get("block_end");
    if (start !== null || end !== null) {
      range = `${start ?? ""}-${end ?? ""}`;
      if (!ranges.includes(range)) return refusalResponse(refuse("no_contributions", `No contributions are pending for blocks ${range}; pending: ${ranges.join(", ")}.`, "block_start"), 400);
    } else if (ranges.length === 1 && ranges[0] !== undefined) {
      range = ranges[0];
    } else {
      return refusalResponse(refuse("invalid_value", `Several block ranges are pending (${ranges.join(", ")}): name one with ?block_start=&block_end=.`, "block_start"), 400);
    }
    // Every participant with something pending must have sent the same ranges (as aggregate() rules).
    const rangesOf = new Map<string, Set<string>>();
    for (const p of all) (rangesOf.get(p.participant) ?? rangesOf.set(p.participant, new Set()).get(p.participant))?.add(p.range);
    const missing = [...rangesOf].find(([, set]) => !set.has(range));
    if (missing) {
      const senders = all.filter((p) => p.range === range).map((p) => p.participant);
      return refusalResponse(refuse("unmatched_block_range", `Blocks ${range} were sent by ${senders.join(", ")} but not by ${missing[0]}.`, "block_start"), 400);
    }
    const chosen = all.filter((p) => p.range === range);
    let body: Uint8Array;
    try {
      const inputs: ParticipantContribution[] = chosen.map((p) => ({ participant: p.participant, contribution: p.contribution }));
      const [result] = aggregate(inputs);
      if (!result) return refusalResponse(refuse("no_contributions", "Nothing to aggregate."), 400);
      body = encodeContribution(result);
    } catch (err) {
      if (err instanceof AggregateError) return refusalResponse(refuse(err.code, err.message, err.participant ?? null), err.code === "duplicate_contribution" ? 409 : 400);
      throw err;
    }
    for (const p of chosen) this.pending.delete(`${p.participant}\n${p.range}`);
    const latencyMs = Date.now() - started;
    meta.totalSyncs += 1;
    meta.syncLatencyTotalMs += latencyMs;
    this.ctx.waitUntil(this.save());
    return new Response(body, {
      headers: {
        "content-type": "application/octet-stream",
        "x-fedattn-participants": chosen.map((p) => p.participant).join(","),
        "x-fedattn-sync-latency-ms": String(latencyMs),
        "x-fedattn-bytes": String(body.byteLength),
        "x-fedattn-pending-ranges": String(ranges.length - 1),
      },
    });
  }

  private summaryOf(meta: SessionMeta): SessionSummary {
    const pending = [...this.pending.values()].map((p) => ({ participant: p.participant, block_start: p.contribution.blockStart, block_end: p.contribution.blockEnd, bytes: p.bytes.byteLength }));
    return {
      session_id: meta.id,
      status: "active",
      initiator: meta.initiator,
      participants: [...meta.participants],
      sync_interval: meta.syncInterval,
      privacy_mode: meta.privacyMode,
      started_at: new Date(meta.startedAt).toISOString(),
      last_activity_at: new Date(meta.lastActivityAt).toISOString(),
      pending_contributions: pending.length,
      pending,
      total_syncs: meta.totalSyncs,
      average_sync_latency_ms: meta.totalSyncs > 0 ? meta.syncLatencyTotalMs / meta.totalSyncs : null,
    };
  }

  private async save(): Promise<void> {
    if (this.meta) await this.ctx.storage.put(META_KEY, this.meta);
  }

  /** Forgets the session (memory, storage, alarm) and takes it out of the index. */
  private async finish(): Promise<void> {
    const id = this.meta?.id;
    this.meta = null;
    this.pending.clear();
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    if (id) await this.env.FEDATTN_INDEX.get(this.env.FEDATTN_INDEX.idFromName("index")).remove(id);
  }

  private unknown(): SessionRefusal {
    return refuse("not_found", "No active federated-attention session has this id (it never existed, ended, or expired after being idle).");
  }

  private notParticipant(node: string): SessionRefusal {
    return refuse("permission_denied", `Node ${node || "(none)"} is not a participant of this session; join it first.`);
  }
}
