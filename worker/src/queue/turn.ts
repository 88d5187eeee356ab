import type { RequestDeps } from "../platform/deps.ts";
import type { LiveNode } from "../nodes/live.ts";
import type { NodeEntry } from "../routing/snapshot.ts";
import { ApiError } from "../errors.ts";
import { countEvent, observe } from "../platform/metrics.ts";
import { LOWEST_PRIORITY_RANK, PRIORITY_CLASSES } from "../priority/class.ts";
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
  /**
   * Per cent of a node's in-flight target kept free for better classes (trunk reservation): standard
   * counts a node full at the target less this share, batch at the target less twice it; 0 turns it off.
   */
  headroomPercent: number;
}

/** What the queue needs to know about one request. */
export interface TurnAsk {
  model: string;
  /** The planned nodes, in routing order. */
  nodes: readonly NodeEntry[];
  live: Record<string, LiveNode>;
  /** This isolate's change to a node's load since its heartbeat of `liveAt` (routing/sent.ts `loadSince`). */
  loadSince: (nodeId: string, liveAt: number) => number;
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

/** The class a rank belongs to, as its index in PRIORITY_CLASSES (0 interactive, 1 standard, 2 batch). */
function classIndexOf(rank: number): number {
  return Math.min(PRIORITY_CLASSES.length - 1, Math.max(0, Math.floor(rank / 2)));
}

/**
 * The in-flight count at which a node is full for a class: the target for interactive, and for each
 * class below it `headroomPercent` of the target less (standard one share, batch two), at least 1. The
 * slots between are kept for better classes: engines do not preempt a running request, so an
 * interactive request finding every slot taken by batch would wait for one to finish.
 */
export function classThreshold(target: number, classIndex: number, headroomPercent: number): number {
  if (classIndex <= 0 || headroomPercent <= 0) return target;
  return Math.max(1, Math.floor(target * (1 - (classIndex * headroomPercent) / 100)));
}

/** A node's in-flight count as this isolate knows it (its last heartbeat's, corrected by its own sends and ends since), and its target; null when either is unknown. */
function nodeLoad(n: NodeEntry, live: Record<string, LiveNode>, loadSince: TurnAsk["loadSince"], inflightTarget: number): { inFlight: number; target: number } | null {
  const l = live[n.id];
  if (!l) return null;
  const target = inflightTarget > 0 ? inflightTarget : l.capacity;
  if (target <= 0) return null;
  return { inFlight: Math.max(0, l.inFlight + loadSince(n.id, l.at)), target };
}

/**
 * True when every planned node is full for the request's rank: its in-flight count (its last
 * heartbeat's, corrected by this isolate's sends and ends since) at or above its in-flight target
 * (QUEUE_INFLIGHT_TARGET, or the node's capacity), less the headroom kept for better classes
 * (`classThreshold`). A node whose load or capacity is unknown is never full.
 */
export function everyNodeFull(nodes: readonly NodeEntry[], live: Record<string, LiveNode>, loadSince: TurnAsk["loadSince"], inflightTarget: number, rank = 0, headroomPercent = 0): boolean {
  if (nodes.length === 0) return false;
  const cls = classIndexOf(rank);
  return nodes.every((n) => {
    const load = nodeLoad(n, live, loadSince, inflightTarget);
    return load !== null && load.inFlight >= classThreshold(load.target, cls, headroomPercent);
  });
}

/**
 * The worst rank some planned node has room for now (LOWEST_PRIORITY_RANK when headroom is off or a
 * node's load is unknown, -1 when every node is full even for interactive): what a slot freed now
 * may be given to.
 */
export function roomForRank(nodes: readonly NodeEntry[], live: Record<string, LiveNode>, loadSince: TurnAsk["loadSince"], settings: QueueSettings): number {
  if (settings.headroomPercent <= 0) return LOWEST_PRIORITY_RANK;
  let best = -1;
  for (const n of nodes) {
    const load = nodeLoad(n, live, loadSince, settings.inflightTarget);
    if (load === null) return LOWEST_PRIORITY_RANK;
    for (let cls = PRIORITY_CLASSES.length - 1; cls >= 0; cls--) {
      if (load.inFlight < classThreshold(load.target, cls, settings.headroomPercent)) {
        best = Math.max(best, cls * 2 + 1);
        break;
      }
    }
  }
  return best;
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
  const full = everyNodeFull(ask.nodes, ask.live, ask.loadSince, settings.inflightTarget, ask.rank, settings.headroomPercent);
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
    if (ask.signal.aborted) slotFreed(deps, ns, ask.model, () => ask.rank);
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
 * requests, its queue admits the next one that `roomFor` (the worst rank the fleet has room for now,
 * `roomForRank`; any when absent) allows, in waitUntil with a deadline; a lost call is covered by the
 * queue's probe.
 */
export function slotFreed(deps: Pick<TurnDeps, "waitUntil" | "settings">, ns: QueueNamespace | undefined, model: string, roomFor?: () => number): void {
  if (!ns || deps.settings.queue.maxWaitMs === 0 || !isCongested(model)) return;
  const maxRank = roomFor ? roomFor() : LOWEST_PRIORITY_RANK;
  if (maxRank < 0) return;
  deps.waitUntil(
    withDeadline(stubOf(ns, model).release(1, maxRank), SMALL_CALL_MS)
      .then((depth) => markCongested(model, depth, deps.settings.queue))
      .catch(() => undefined),
  );
}

/**
 * Wraps a node's in-flight release (routing/sent.ts `trackSend`) so that the request's end also
 * frees its slot in the model's queue (`slotFreed`, for the ranks `roomFor` says have room once
 * this request's slot is free); the result may be called more than once.
 */
export function endsSlot(deps: Pick<TurnDeps, "waitUntil" | "settings">, ns: QueueNamespace | undefined, model: string, release: () => void, roomFor?: () => number): () => void {
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    release();
    slotFreed(deps, ns, model, roomFor);
  };
}
