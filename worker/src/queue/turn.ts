import type { RequestDeps } from "../platform/deps.ts";
import type { LiveNode } from "../nodes/live.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import { ApiError } from "../errors.ts";
import { countEvent, observe } from "../platform/metrics.ts";
import type { WaitOutcome } from "./edge-queue.ts";

/** The edge queue's settings (settings.ts; docs/configuration.md). */
export interface QueueSettings {
  /** How long a request may wait for capacity at the edge; 0 turns the queue off (requests go to the least-loaded node). */
  maxWaitMs: number;
  /** Requests one model's queue holds; past it a request is refused at once. */
  maxWaiting: number;
  /** In-flight requests per node that count as full; 0: the node's capacity (its engines' concurrency caps, from heartbeats). */
  inflightTarget: number;
  /** With requests waiting and no slot freed for this long, the queue lets one through to probe the fleet. */
  recheckMs: number;
}

/** What the queue needs to know about one request. */
export interface TurnAsk {
  model: string;
  /** The planned nodes, in routing order. */
  nodes: readonly NodeEntry[];
  live: Record<string, LiveNode>;
  sentSince: (nodeId: string, liveAt: number) => number;
  rank: number;
  cls: string;
  tenantId: string;
  /** Aborted when the client leaves. */
  signal: AbortSignal;
}

/** What the queue's gateway side uses of a request's dependencies. */
export type TurnDeps = Pick<RequestDeps, "settings" | "log" | "waitUntil" | "requestId">;

/** The queue objects' namespace (the EDGE_QUEUE binding). */
export type QueueNamespace = Env["EDGE_QUEUE"];

/** Extra time over the wait itself that a call to the queue object may take before the gateway gives up on it. */
const CALL_GRACE_MS = 2_000;
/** Deadline of the small calls (release, leave). */
const SMALL_CALL_MS = 1_000;

/**
 * Models this isolate knows to have waiting requests, with when that knowledge lapses: a request of
 * such a model tells the model's queue when it ends (a freed slot). Kept per isolate; the queue
 * object's periodic probe covers the slots other isolates free without knowing.
 */
const congested = new Map<string, number>();

function markCongested(model: string, depth: number, settings: QueueSettings): void {
  if (depth > 0) congested.set(model, Date.now() + settings.maxWaitMs + CALL_GRACE_MS);
  else congested.delete(model);
}

function isCongested(model: string): boolean {
  const until = congested.get(model);
  if (until === undefined) return false;
  if (until > Date.now()) return true;
  congested.delete(model);
  return false;
}

/**
 * True when every planned node is at its in-flight target: its last heartbeat's in-flight count plus
 * the requests this isolate sent it since, against the target (QUEUE_INFLIGHT_TARGET, or the node's
 * capacity). A node whose load or capacity is unknown is never full.
 */
export function everyNodeFull(nodes: readonly NodeEntry[], live: Record<string, LiveNode>, sentSince: (nodeId: string, liveAt: number) => number, inflightTarget: number): boolean {
  if (nodes.length === 0) return false;
  return nodes.every((n) => {
    const l = live[n.id];
    if (!l) return false;
    const target = inflightTarget > 0 ? inflightTarget : l.capacity;
    if (target <= 0) return false;
    return l.inFlight + sentSince(n.id, l.at) >= target;
  });
}

/** A queue call that did not answer in time. */
class QueueDeadline extends Error {}

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new QueueDeadline(`edge queue call exceeded ${ms} ms`)), ms)));
  p.catch(() => undefined);
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

function stubOf(ns: QueueNamespace, model: string) {
  return ns.get(ns.idFromName(model));
}

/** Seconds a refused request should wait before retrying: the queue's own wait, at least one second. */
function retryAfter(settings: QueueSettings): string {
  return String(Math.max(1, Math.ceil(settings.maxWaitMs / 1000)));
}

/**
 * Waits for the request's turn when every planned node is at its in-flight target (docs/edge-queue.md):
 * resolves when it may go to a node (at once on the ordinary path, with no call at all), throws the
 * refusal when its wait ran out (429 `queue_timeout`) or the model's queue is full (503
 * `no_capacity`), and rejects when the client left while waiting. If the queue object cannot be
 * reached in time, the request goes on as before the queue existed (to the least-loaded node) and
 * `edge_queue_unavailable` is logged.
 */
export async function awaitTurn(deps: TurnDeps, ns: QueueNamespace | undefined, ask: TurnAsk): Promise<void> {
  const settings = deps.settings.queue;
  if (settings.maxWaitMs === 0 || !ns) return;
  const full = everyNodeFull(ask.nodes, ask.live, ask.sentSince, settings.inflightTarget);
  if (!full && !isCongested(ask.model)) return;
  // Requests of the model now tell its queue when they end (slotFreed).
  markCongested(ask.model, 1, settings);
  const stub = stubOf(ns, ask.model);
  const ticket = crypto.randomUUID();
  const started = Date.now();
  const leave = () => deps.waitUntil(withDeadline(stub.leave(ticket), SMALL_CALL_MS).catch(() => false));
  let onAbort: (() => void) | null = null;
  const aborted = new Promise<"aborted">((resolve) => {
    onAbort = () => resolve("aborted");
    if (ask.signal.aborted) resolve("aborted");
    else ask.signal.addEventListener("abort", onAbort, { once: true });
  });
  let outcome: WaitOutcome | "aborted";
  try {
    const call = stub.wait({ ticket, rank: ask.rank, cls: ask.cls, tenantId: ask.tenantId, full, maxWaitMs: settings.maxWaitMs, maxWaiting: settings.maxWaiting, recheckMs: settings.recheckMs });
    outcome = await Promise.race([withDeadline(call, settings.maxWaitMs + CALL_GRACE_MS), aborted]);
  } catch (err) {
    // Fail open: the queue orders requests; without it they flood the engines as they did before it.
    deps.log("edge_queue_unavailable", { model: ask.model, requestId: deps.requestId, error: err instanceof Error ? err.message : String(err) });
    countEvent("switchyard_edge_queue_total", { class: ask.cls, outcome: "unavailable" });
    leave();
    return;
  } finally {
    if (onAbort) ask.signal.removeEventListener("abort", onAbort);
  }
  const waitedMs = Date.now() - started;
  if (outcome === "aborted" || outcome.kind === "left") {
    leave();
    countEvent("switchyard_edge_queue_total", { class: ask.cls, outcome: "cancelled" });
    throw new ApiError("no_capacity", "The client went away while the request waited for a GPU node.");
  }
  markCongested(ask.model, outcome.kind === "full" ? 1 : outcome.depth, settings);
  if (outcome.kind === "admitted") {
    // A request that saw room and had no one to wait behind (while the model was congested) did not queue.
    if (full || outcome.waitedMs > 0) {
      countEvent("switchyard_edge_queue_total", { class: ask.cls, outcome: "admitted" });
      observe("switchyard_edge_queue_wait_seconds", waitedMs / 1000, { class: ask.cls });
    }
    // Admitted just as the client left: the slot goes to the next in line.
    if (ask.signal.aborted) slotFreed(deps, ns, ask.model);
    return;
  }
  countEvent("switchyard_edge_queue_total", { class: ask.cls, outcome: outcome.kind });
  countEvent("switchyard_admission_refusals_total", { layer: "queue", reason: outcome.kind === "full" ? "queue_full" : "queue_timeout" });
  if (outcome.kind === "full") {
    throw new ApiError(
      "no_capacity",
      `Every GPU node serving '${ask.model}' is busy and ${outcome.depth} requests are already waiting for one at the gateway. Retry after ${retryAfter(settings)} s, or lower your request rate.`,
      { headers: { "retry-after": retryAfter(settings) } },
    );
  }
  observe("switchyard_edge_queue_wait_seconds", waitedMs / 1000, { class: ask.cls });
  throw new ApiError(
    "queue_timeout",
    `Every GPU node serving '${ask.model}' stayed busy for the ${Math.round(settings.maxWaitMs / 100) / 10} s this request may wait at the gateway (priority class '${ask.cls}'; higher classes go first). Retry after ${retryAfter(settings)} s, send fewer requests at once, or use a key with a higher priority class.`,
    { headers: { "retry-after": retryAfter(settings) } },
  );
}

/**
 * A request of `model` ended on a node (success, failure or cancel): when the model has waiting
 * requests, its queue admits the next one (in waitUntil, with a deadline; a lost call is covered
 * by the queue's probe).
 */
export function slotFreed(deps: Pick<TurnDeps, "waitUntil" | "settings">, ns: QueueNamespace | undefined, model: string): void {
  if (!ns || deps.settings.queue.maxWaitMs === 0 || !isCongested(model)) return;
  deps.waitUntil(
    withDeadline(stubOf(ns, model).release(1), SMALL_CALL_MS)
      .then((depth) => markCongested(model, depth, deps.settings.queue))
      .catch(() => undefined),
  );
}

/**
 * Wraps a node's in-flight release (routing/sent.ts `trackSend`) so that the request's end also
 * frees its slot in the model's queue (`slotFreed`); the result may be called more than once.
 */
export function endsSlot(deps: Pick<TurnDeps, "waitUntil" | "settings">, ns: QueueNamespace | undefined, model: string, release: () => void): () => void {
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    release();
    slotFreed(deps, ns, model);
  };
}
