/**
 * LoRA adapters loaded on demand. A request for an adapter goes, like any model, only to the nodes
 * whose live state lists it (pick.ts). When no eligible node has it loaded, its catalogue entry has
 * an `adapter_source`, and nodes serve its base model, the gateway picks the least-loaded eligible
 * node of the nearest region for the base (planRoute with the base model, least-load), asks that
 * node's backplane to load it (`POST /management/adapters`, signed) and sends the request there.
 *
 * The choice is remembered so concurrent requests do not each load the adapter somewhere else:
 * `SET <prefix>lora:<adapter> <node> NX EX 60` in Redis (the first request's choice wins for every
 * isolate; the others use that node) and, in the isolate, the node with its load in flight (later
 * requests wait on the same load instead of asking again). A request that finds another isolate's
 * choice still asks that node to load it: the backplane answers at once when the adapter is already
 * there and joins a load in flight, so the engine loads it once. Within a second or two the node's
 * next heartbeat lists the adapter and ordinary routing takes over. The isolate trusts its own load
 * only until the node heartbeats again: a heartbeat that came after the load and does not list the
 * adapter (it was unloaded since) sends the next request through the load again.
 *
 * Redis down (decided here): the adapter is loaded on this request's choice without the lock (logged
 * `adapter_lock_unavailable`). Two isolates may then load it on two nodes, which costs an adapter
 * slot, not a failed request; refusing would make the adapter unusable during a Redis outage.
 */
import type { Context } from "hono";
import { queueAudit } from "../audit/outbox.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { callNodeManagement, managementError } from "../nodes/management.ts";
import { planRoute, type RouteInput } from "./pick.ts";
import type { NodeEntry } from "./snapshot.ts";

/** How long the node chosen for an adapter is remembered (seconds), in Redis and in the isolate. */
export const ADAPTER_CHOICE_SECONDS = 60;
/** How long a request waits for a node to load an adapter (it may fetch it first). */
export const ADAPTER_LOAD_TIMEOUT_MS = 60_000;
/** The backplane's adapter route (backplane/src/management/adapters.ts). */
export const ADAPTERS_MANAGEMENT_PATH = "/management/adapters";

/** Redis key of the node chosen to load `adapter`. */
export function adapterChoiceKey(prefix: string, adapter: string): string {
  return `${prefix}lora:${adapter}`;
}

/** A node chosen for an adapter in this isolate, and its load (resolved once the node serves it). */
interface Choice {
  nodeId: string;
  until: number;
  loaded: Promise<void>;
  /** When the load finished (this isolate's clock), null while it runs. */
  loadedAt: number | null;
}

const choices = new Map<string, Choice>();

/**
 * Routes a request for a LoRA adapter that no eligible node has loaded (`input` is the plan's input
 * for the adapter): loads it on a node serving its base and returns that node, or returns null when
 * that does not apply (not an adapter, no adapter_source, no eligible node for the base), so the
 * caller answers as for any model without capacity. A failed load is a 502 naming the node's reason.
 */
export async function routeToLoadedAdapter(c: Context<AppEnv>, input: RouteInput): Promise<NodeEntry[] | null> {
  const entry = input.snapshot.models[input.model];
  if (!entry?.baseModel || !entry.adapterSource) return null;
  const { baseModel, adapterSource } = entry;
  const plan = planRoute({ ...input, model: baseModel, strategy: "least-load", prefixHash: null });
  // A half-open node is on trial for ordinary traffic; loading an adapter there would be a second trial.
  const candidates = plan.nodes.filter((n) => !plan.halfOpen.has(n.id));
  const target = candidates[0];
  if (!target) return null;

  const now = Date.now();
  const remembered = choices.get(input.model);
  if (remembered && remembered.until > now) {
    const node = candidates.find((n) => n.id === remembered.nodeId);
    // A heartbeat newer than the load that does not list the adapter (else we would not be here): it is gone.
    const heardSince = remembered.loadedAt !== null && (input.live[remembered.nodeId]?.at ?? 0) > remembered.loadedAt;
    if (node && !heardSince) {
      await remembered.loaded;
      return [node];
    }
  }

  const deps = c.get("deps");
  const key = adapterChoiceKey(deps.settings.redisPrefix, input.model);
  let node = target;
  try {
    const [, owner] = await deps.redis.pipeline().set(key, target.id, { nx: true, ex: ADAPTER_CHOICE_SECONDS }).get<string>(key).exec<[unknown, string | null]>();
    // Another request chose first: use its node while it can take this request too.
    node = candidates.find((n) => n.id === owner) ?? target;
  } catch (err) {
    deps.log("adapter_lock_unavailable", { requestId: deps.requestId, adapter: input.model, node: target.id, error: String(err) });
  }

  const choice: Choice = { nodeId: node.id, until: now + ADAPTER_CHOICE_SECONDS * 1000, loaded: Promise.resolve(), loadedAt: null };
  choice.loaded = loadOn(c, node, input.model, baseModel, adapterSource).then(
    () => {
      choice.loadedAt = Date.now();
    },
    (err: unknown) => {
      if (choices.get(input.model) === choice) choices.delete(input.model);
      // Let the next request choose again (another node, or this one once fixed).
      deps.waitUntil(deps.redis.del(key).catch(() => null));
      throw err;
    },
  );
  choices.set(input.model, choice);
  await choice.loaded;
  return [node];
}

/** Asks `node` to load the adapter; resolves when it serves it, throws a 502 naming the node's reason otherwise. */
async function loadOn(c: Context<AppEnv>, node: NodeEntry, adapter: string, base: string, source: string): Promise<void> {
  const deps = c.get("deps");
  const started = Date.now();
  const answer = await callNodeManagement(deps, node, "POST", ADAPTERS_MANAGEMENT_PATH, { name: adapter, source, base }, ADAPTER_LOAD_TIMEOUT_MS).catch((err: unknown) => {
    throw new ApiError("upstream_error", `The LoRA adapter '${adapter}' is not loaded on any node, and node ${node.id} could not be asked to load it${err instanceof ApiError ? `: ${err.message}` : "."}`);
  });
  if (answer.status !== 200) {
    deps.log("adapter_load_failed", { requestId: deps.requestId, adapter, node: node.id, status: answer.status, error: managementError(answer) });
    throw new ApiError("upstream_error", `The LoRA adapter '${adapter}' is not loaded on any node, and node ${node.id} could not load it: ${managementError(answer)}`);
  }
  const result = answer.body as { status?: unknown; engine?: unknown } | null;
  deps.log("adapter_loaded", { requestId: deps.requestId, adapter, base, node: node.id, engine: result?.engine ?? null, status: result?.status ?? null, ms: Date.now() - started });
  if (result?.status === "loaded") {
    const event = {
      actor: "gateway",
      action: "node.adapter_load",
      targetType: "node",
      targetId: node.id,
      tenantId: null,
      details: { adapter, base, source, engine: result.engine ?? null, trigger: "request", request_id: deps.requestId, tenant_id: c.get("identity").tenantId },
    };
    deps.waitUntil(queueAudit(deps.redis, deps.settings.redisPrefix, event).catch(() => null));
  }
}
