/**
 * A council vote (docs/council.md): every specialist asked in parallel, each an ordinary chat
 * request through routing and failover to a node; then the synthesiser writes the consensus from
 * the answers. One admission reserves the whole fan-out up front (limits/admission.ts); each engine
 * call is metered as its own usage row, linked by the vote's id (`usage_records.vote_id`), settled
 * together against that admission (metering/request-end.ts `settleRequests`). The vote's record goes
 * to the outbox in the same end batch (flush.ts writes it to Postgres).
 */
import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { admit, maxCost, rateTokens, type Admission } from "../limits/admission.ts";
import type { Cost } from "../limits/budgets.ts";
import { usageOutboxKey } from "../metering/flush.ts";
import { usageRow, type UsageRow } from "../metering/record.ts";
import { settleRequests } from "../metering/request-end.ts";
import { enqueue } from "../platform/outbox.ts";
import { forwardToBackplane } from "../proxy/forward.ts";
import { readJson } from "../proxy/json-tap.ts";
import { tapSse } from "../proxy/sse-tap.ts";
import type { StreamOutcome } from "../proxy/usage.ts";
import { validateRequest, type ProxyRequest } from "../proxy/validate.ts";
import { catalogueModel, keyAllows } from "../routing/aliases.ts";
import type { ModelEntry, NodeEntry } from "../routing/snapshot.ts";
import { trackSend } from "../routing/sent.ts";
import { reportNodeResult, routeRequest } from "../routes/proxy.ts";
import { takeAuthAudit } from "../auth/middleware.ts";
import { StreamCapture } from "../conversations/capture.ts";
import { voteOutboxKey, type VoteRecord } from "./flush.ts";
import { auditHash, concernsOf, confidenceOf, consensusFromPayloads, recommendationOf, synthesisPrompt } from "./outcome.ts";
import type { Council, Recommendation, Specialist } from "./types.ts";
import type { VoteAnswer } from "./wire.ts";

export type { VoteAnswer };

/** The instruction the synthesiser gets before its persona (docs/council.md). */
export const SYNTHESIS_INSTRUCTION =
  "Write the council's consensus: one short paragraph that weighs every specialist's answer below, names the concerns they raised, and ends with what the council recommends.";
/** The most output a specialist gives when its sampling settings set none. */
const DEFAULT_MAX_TOKENS = 512;

/** One planned engine call: who, on which model, the validated request. */
interface Planned {
  specialist: Specialist;
  model: ModelEntry;
  req: ProxyRequest;
  bytes: number;
}

/** How one call ended. */
type CallResult = { name: string; ok: true; text: string; row: UsageRow } | { name: string; ok: false; reason: string; row: UsageRow | null };

/** A new vote id: `vote_` and 32 hex digits. */
export function newVoteId(): string {
  return `vote_${crypto.randomUUID().replaceAll("-", "")}`;
}

/** The chat body a specialist is asked with: its persona, the question, its sampling settings. */
function specialistBody(s: Specialist, modelId: string, system: string, user: string): string {
  return JSON.stringify({ model: modelId, messages: [{ role: "system", content: system }, { role: "user", content: user }], ...s.sampling, max_tokens: s.sampling.max_tokens ?? DEFAULT_MAX_TOKENS });
}

/** Resolves and validates one specialist's call; an ApiError names what is wrong with the council. */
function plan(c: Context<AppEnv>, council: Council, s: Specialist, system: string, user: string): Planned {
  const identity = c.get("identity");
  const model = catalogueModel(c.get("routing").snapshot, s.model);
  if (!model || model.kind !== "chat" || !keyAllows(identity.allowedModels, model)) {
    throw new ApiError("invalid_value", `The council '${council.name}' asks '${s.name}' on the model '${s.model}', which is not a chat model this key may use. GET /v1/models lists them; an admin can change the council.`, {
      param: "council",
    });
  }
  const body = specialistBody(s, model.id, system, user);
  return { specialist: s, model, req: validateRequest("chat", body), bytes: body.length };
}

function sum(costs: Cost[]): Cost {
  return costs.reduce((a, b) => ({ tokens: a.tokens + b.tokens, spend: a.spend + b.spend, requests: a.requests + b.requests }), { tokens: 0, spend: 0, requests: 0 });
}

/** The most a synthesis can cost: its model's whole context (its prompt holds every answer). */
function synthesisCost(model: ModelEntry): Cost {
  return { tokens: model.contextLength, spend: Math.ceil(model.contextLength * Math.max(model.inputPrice, model.outputPrice)), requests: 1 };
}

/**
 * Admits the whole fan-out: the specialists' calls and the synthesis, each priced as the engine may
 * run it, against every limit and budget at once. A vote counts as one request per minute and one
 * concurrency slot; request budgets count every engine call.
 */
async function admitFanOut(c: Context<AppEnv>, calls: Planned[], synthesis: ModelEntry | null, voteId: string): Promise<Admission> {
  const deps = c.get("deps");
  const identity = c.get("identity");
  const snapshot = c.get("routing").snapshot;
  const costs = calls.map((p) => maxCost(p.req, p.bytes, p.model));
  if (synthesis) costs.push(synthesisCost(synthesis));
  const rate = calls.reduce((n, p) => n + rateTokens(p.req, p.bytes, p.model), 0) + (synthesis ? Math.min(synthesis.contextLength, 4096) : 0);
  return admit(deps, identity, snapshot, { max: sum(costs), rateTokens: rate, limitField: "max_tokens" }).catch((err: unknown) => {
    if (err instanceof ApiError && calls[0]) {
      const refused = rowFor(c, `${deps.requestId}-refused`, calls[0].model, null, err.status, { status: "rejected", usage: null, firstByteAt: null, deliveredChunks: 0, errorCode: err.code }, false, voteId);
      deps.waitUntil(enqueue(deps.redis, usageOutboxKey(deps.settings.redisPrefix), refused).catch(() => null));
    }
    throw err;
  });
}

function rowFor(c: Context<AppEnv>, id: string, model: ModelEntry, node: NodeEntry | null, httpStatus: number, outcome: StreamOutcome, streamed: boolean, voteId: string | null, promptEstimate = 0): UsageRow {
  const deps = c.get("deps");
  const multipliers = c.get("routing").snapshot.regionMultipliers ?? {};
  const row = usageRow({
    requestId: id,
    startedAt: deps.startedAt,
    endedAt: Date.now(),
    identity: c.get("identity"),
    endpoint: "chat",
    model,
    node,
    httpStatus,
    streamed,
    outcome,
    priceMultiplier: node ? (multipliers[node.regionId] ?? 1) : 1,
    promptTokensEstimate: promptEstimate,
  });
  return { ...row, voteId };
}

/** The text of a chat completion's first choice, or null. */
function answerText(bytes: Uint8Array): string | null {
  try {
    const body = JSON.parse(new TextDecoder().decode(bytes)) as { choices?: { message?: { content?: unknown } }[] };
    const content = body.choices?.[0]?.message?.content;
    return typeof content === "string" ? content : null;
  } catch {
    return null;
  }
}

/** The forwarding options every call shares. */
function forwardOptions(c: Context<AppEnv>, p: Planned, id: string, signal: AbortSignal) {
  const deps = c.get("deps");
  return {
    path: "/v1/chat/completions",
    body: p.req.upstreamBody,
    requestId: id,
    masterSecret: deps.secrets.nodeSigning,
    connectTimeoutMs: deps.settings.upstreamConnectTimeoutMs,
    clientSignal: signal,
    maxAttempts: deps.settings.routing.maxAttempts,
    deadlineMs: deps.settings.routing.deadlineMs,
    onNodeResult: (node: NodeEntry, ok: boolean) => reportNodeResult(c, node, ok),
    track: (node: NodeEntry) => trackSend(node.id),
    relayClientErrors: true,
    // Each specialist's attempts are spans of the vote's trace (tracing/).
    trace: deps.trace ?? null,
    // The caller's class (docs/priority.md), set before the council took the request.
    priorityRank: c.get("priority")?.rank,
  };
}

/** Asks one specialist (non-streamed); never throws: a failure is reported with its reason. */
async function ask(c: Context<AppEnv>, p: Planned, id: string, signal: AbortSignal, voteId: string | null, deadlineMs: number): Promise<CallResult> {
  const name = p.specialist.name;
  const failedRow = (reason: string, status: StreamOutcome["status"]) =>
    rowFor(c, id, p.model, null, 504, { status, usage: null, firstByteAt: null, deliveredChunks: 0, errorCode: reason }, false, voteId);
  let candidates: NodeEntry[];
  try {
    candidates = await routeRequest(c, p.model.id, p.req.prefixHash);
  } catch (err) {
    return { name, ok: false, reason: err instanceof ApiError ? err.message : "No GPU node could be chosen.", row: null };
  }
  try {
    const forwarded = await forwardToBackplane(forwardOptions(c, p, id, signal), candidates);
    // Released however the body ends (read whole, broken, or cut by the deadline).
    const { bytes, outcome } = await readJson(forwarded.response, Date.now()).finally(forwarded.release);
    const status = bytes ? forwarded.response.status : 502;
    const row = rowFor(c, id, p.model, forwarded.node, status, outcome, false, voteId, p.req.promptTokensEstimate);
    const text = bytes && status === 200 ? answerText(bytes) : null;
    if (text === null) return { name, ok: false, reason: signal.aborted ? `did not answer within ${deadlineMs / 1000} s` : `the engine answered ${status} without an answer`, row };
    return { name, ok: true, text, row };
  } catch (err) {
    if (signal.aborted) return { name, ok: false, reason: `did not answer within ${deadlineMs / 1000} s`, row: failedRow("deadline_exceeded", "cancelled") };
    return { name, ok: false, reason: err instanceof ApiError ? err.message : "The GPU node failed.", row: failedRow("upstream_error", "error") };
  }
}

/** Runs `fn` with a signal that aborts after `ms` or when the client goes away; the timer is always cleared. */
async function withDeadline<T>(c: Context<AppEnv>, ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  const onClientGone = () => controller.abort();
  c.req.raw.signal.addEventListener("abort", onClientGone, { once: true });
  try {
    return await fn(controller.signal);
  } finally {
    clearTimeout(timer);
    c.req.raw.signal.removeEventListener("abort", onClientGone);
  }
}

/** What a vote's fan-out produced, before the synthesis. */
interface Fanned {
  voteId: string;
  council: Council;
  question: string;
  admission: Admission;
  results: CallResult[];
  responses: Record<string, string>;
  failures: Record<string, string>;
  synthesis: Planned | null;
}

/** Asks every specialist of `council` (or only `only`) in parallel, after one admission for the whole vote. */
async function fanOut(c: Context<AppEnv>, council: Council, question: string, opts: { only?: Specialist; synthesise: boolean }): Promise<Fanned> {
  const asked = opts.only ? [opts.only] : council.specialists;
  const planned = asked.map((s) => plan(c, council, s, s.persona, question));
  const synthesiser = opts.synthesise ? council.specialists.find((s) => s.name === council.synthesiser) : undefined;
  // The synthesis prompt is known only after the answers: validated now with the question alone, sent later with them.
  const synthesis = synthesiser ? plan(c, council, synthesiser, `${SYNTHESIS_INSTRUCTION}\n\n${synthesiser.persona}`, question) : null;
  const voteId = newVoteId();
  const admission = await admitFanOut(c, planned, synthesis?.model ?? null, voteId);
  const deps = c.get("deps");
  const results = await withDeadline(c, council.deadlineMs, (signal) => Promise.all(planned.map((p) => ask(c, p, `${deps.requestId}-${p.specialist.name}`, signal, voteId, council.deadlineMs))));
  const responses: Record<string, string> = {};
  const failures: Record<string, string> = {};
  for (const r of results) {
    if (r.ok) responses[r.name] = r.text;
    else failures[r.name] = r.reason;
  }
  return { voteId, council, question, admission, results, responses, failures, synthesis };
}

function usageOf(rows: UsageRow[]): VoteAnswer["usage"] {
  const prompt = rows.reduce((n, r) => n + (r.promptTokens ?? 0), 0);
  const completion = rows.reduce((n, r) => n + (r.completionTokens ?? 0), 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** The vote's answer and its stored record, from the fan-out and the consensus. */
async function conclude(c: Context<AppEnv>, f: Fanned, consensus: string | null, synthesisFailure: string | null, rows: UsageRow[]): Promise<{ answer: VoteAnswer; record: VoteRecord }> {
  const identity = c.get("identity");
  const concerns = concernsOf(f.council, f.responses);
  const answered = Object.keys(f.responses).length;
  const failures = { ...f.failures };
  if (synthesisFailure && f.synthesis) failures[`${f.synthesis.specialist.name} (synthesis)`] = synthesisFailure;
  // Nobody answered: nothing supports going ahead.
  const recommendation: Recommendation = answered === 0 ? "REVIEW REQUIRED" : recommendationOf(f.council, concerns);
  const confidence = answered === 0 ? 0 : confidenceOf(concerns);
  const answer: VoteAnswer = {
    object: "council.vote",
    id: f.voteId,
    council: f.council.name,
    question: f.question,
    responses: f.responses,
    failures,
    consensus,
    concerns,
    recommendation,
    confidence,
    partial: Object.keys(failures).length > 0,
    audit_hash: await auditHash(f.question, f.responses),
    timestamp: new Date().toISOString(),
    usage: usageOf(rows),
  };
  const cost = rows.reduce((n, r) => n + (r.costMicros ?? 0), 0);
  const record: VoteRecord = {
    ...answer,
    tenantId: identity.tenantId,
    environmentId: identity.environmentId,
    apiKeyId: identity.keyId,
    costMicros: cost,
    leaveBreadcrumb: f.council.leaveBreadcrumbs,
  };
  return { answer, record };
}

/** Settles the vote's rows against its admission and queues its record, in waitUntil. */
function settle(c: Context<AppEnv>, f: Fanned, rows: UsageRow[], record: VoteRecord | null): void {
  const deps = c.get("deps");
  const extra = record ? [{ key: voteOutboxKey(deps.settings.redisPrefix), value: JSON.stringify(record) }] : [];
  deps.waitUntil(settleRequests(deps, f.admission, rows, takeAuthAudit(c), null, extra).catch((err: unknown) => deps.log("council_settle_failed", { voteId: f.voteId, error: String(err) })));
}

/** The synthesis request with the answers in its prompt. */
function synthesisRequest(f: Fanned, stream: boolean): Planned | null {
  if (!f.synthesis || Object.keys(f.responses).length === 0) return null;
  const s = f.synthesis.specialist;
  const body = JSON.parse(specialistBody(s, f.synthesis.model.id, `${SYNTHESIS_INSTRUCTION}\n\n${s.persona}`, synthesisPrompt(f.question, f.responses))) as Record<string, unknown>;
  if (stream) Object.assign(body, { stream: true, stream_options: { include_usage: true } });
  const text = JSON.stringify(body);
  return { ...f.synthesis, req: validateRequest("chat", text), bytes: text.length };
}

/** Runs a whole vote and answers it as JSON (POST /v1/council/vote, and the council model without streaming). */
export async function runVote(c: Context<AppEnv>, council: Council, question: string): Promise<VoteAnswer> {
  const f = await fanOut(c, council, question, { synthesise: true });
  const rows = f.results.flatMap((r) => (r.row ? [r.row] : []));
  const synth = synthesisRequest(f, false);
  let consensus: string | null = null;
  let synthesisFailure: string | null = null;
  if (synth) {
    const deps = c.get("deps");
    const result = await withDeadline(c, council.deadlineMs, (signal) => ask(c, synth, `${deps.requestId}-synthesis`, signal, f.voteId, council.deadlineMs));
    if (result.row) rows.push(result.row);
    if (result.ok) consensus = result.text;
    else synthesisFailure = result.reason;
  }
  const { answer, record } = await conclude(c, f, consensus, synthesisFailure, rows);
  settle(c, f, rows, record);
  return answer;
}

/** Asks one specialist (POST /v1/council/specialist/{name}); no vote is recorded, the call is metered. */
export async function askOne(c: Context<AppEnv>, council: Council, specialist: Specialist, question: string): Promise<{ answer: string | null; failure: string | null; concerns: string[]; usage: VoteAnswer["usage"]; id: string }> {
  const f = await fanOut(c, council, question, { only: specialist, synthesise: false });
  const rows = f.results.flatMap((r) => (r.row ? [r.row].map((row) => ({ ...row, voteId: null })) : []));
  settle(c, f, rows, null);
  const answer = f.responses[specialist.name] ?? null;
  return {
    id: f.voteId,
    answer,
    failure: f.failures[specialist.name] ?? null,
    concerns: answer === null ? [] : specialist.concern_tags.filter((t) => answer.includes(t)),
    usage: usageOf(rows),
  };
}

/**
 * The council as a chat model, streamed (`council/<name>` on /v1/chat/completions with
 * `stream: true`): the specialists answer first (nothing is sent meanwhile but the response's
 * headers are not either), then the synthesis is streamed as the engine writes it, in the
 * engine's chunk shape. The vote is recorded with the consensus the stream carried.
 */
export async function streamVote(c: Context<AppEnv>, council: Council, question: string, clientWantsUsage: boolean): Promise<Response> {
  const deps = c.get("deps");
  const f = await fanOut(c, council, question, { synthesise: true });
  const rows = f.results.flatMap((r) => (r.row ? [r.row] : []));
  const synth = synthesisRequest(f, true);
  const headers = new Headers({ "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-request-id": deps.requestId, "x-switchyard-vote-id": f.voteId });
  for (const [k, v] of Object.entries(f.admission.headers)) headers.set(k, v);
  const failWith = async (reason: string) => {
    const { record } = await conclude(c, f, null, reason, rows);
    settle(c, f, rows, record);
    throw new ApiError("upstream_error", `The council's synthesis failed: ${reason}. POST /v1/council/vote answers with every specialist's own answer.`);
  };
  if (!synth) return failWith("no specialist answered");
  let candidates: NodeEntry[];
  try {
    candidates = await routeRequest(c, synth.model.id, synth.req.prefixHash);
  } catch (err) {
    return failWith(err instanceof ApiError ? err.message : "no GPU node could be chosen");
  }
  const abort = new AbortController();
  c.req.raw.signal.addEventListener("abort", () => abort.abort(), { once: true });
  let forwarded;
  try {
    forwarded = await forwardToBackplane({ ...forwardOptions(c, synth, `${deps.requestId}-synthesis`, abort.signal), relayClientErrors: false }, candidates);
  } catch (err) {
    return failWith(err instanceof ApiError ? err.message : "the GPU node failed");
  }
  const upstream = forwarded.response.body as ReadableStream<Uint8Array> | null;
  if (!upstream) {
    forwarded.release();
    return failWith("the GPU node sent an empty response");
  }
  const capture = new StreamCapture();
  const tapped = tapSse(upstream, { stripUsage: !clientWantsUsage, capture });
  const node = forwarded.node;
  const release = forwarded.release;
  deps.waitUntil(
    tapped.done.then(async (outcome) => {
      release();
      rows.push(rowFor(c, `${deps.requestId}-synthesis`, synth.model, node, forwarded.response.status, outcome, true, f.voteId, synth.req.promptTokensEstimate));
      const consensus = consensusFromPayloads(capture.payloads().text);
      const { record } = await conclude(c, f, outcome.status === "ok" ? consensus : null, outcome.status === "ok" ? null : `the synthesis stream ended ${outcome.status}`, rows);
      settle(c, f, rows, record);
    }),
  );
  headers.set("x-switchyard-node", node.id);
  return new Response(tapped.body, { status: 200, headers });
}
