/**
 * Node-choice strategies: given the healthy nodes of one region, the order to try them in.
 * docs/routing.md explains the scoring and how to tune it.
 */
import type { LiveNode } from "../nodes/live.ts";
import type { NodeEntry, RoutingStrategy } from "./snapshot.ts";

/** Weights of the least-load score (settings ROUTING_*_WEIGHT). */
export interface LoadWeights {
  waiting: number;
  running: number;
  kvCache: number;
}

/** What a strategy may look at besides the nodes. */
export interface StrategyInput {
  live: Record<string, LiveNode>;
  weights: LoadWeights;
  /** Requests this isolate sent to a node after that node's last heartbeat and still in flight (not in its load yet). */
  sentSince: (nodeId: string, liveAt: number) => number;
  /** Hash of the request's prefix (system prompt and conversation start), for prefix-affinity. */
  prefixHash: number | null;
  /** Slack over the mean load before prefix-affinity moves on to the next node (0.25 = 25 % above average). */
  affinitySlack: number;
  random: () => number;
}

/**
 * Predicted wait, in "requests ahead of you": waiting requests count fully (each is a whole
 * request's time ahead), running requests and this isolate's unreported sends partly (they share
 * the GPU's batch), KV cache use in proportion (a full cache means preemptions and queueing next).
 * Nodes that never report engine load fall back to the backplane's in-flight count.
 */
export function loadScore(node: NodeEntry, input: StrategyInput): number {
  const live = input.live[node.id];
  if (!live) return 0;
  const unreported = input.sentSince(node.id, live.at);
  const kv = (live.kvCacheUsage ?? 0) * input.weights.kvCache;
  if (live.waiting === null && (live.running ?? null) === null) {
    // No engine metrics (an OpenAI-compatible engine without /metrics): the backplane's own count.
    return ((live.inFlight + unreported) / Math.max(1, live.capacity)) * input.weights.waiting + kv;
  }
  const waiting = live.waiting ?? 0;
  // Sends the node has not reported yet queue behind the waiting ones when it is already queueing.
  const unreportedWeight = waiting > 0 ? input.weights.waiting : input.weights.running;
  return waiting * input.weights.waiting + (live.running ?? live.inFlight) * input.weights.running + unreported * unreportedWeight + kv;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** FNV-1a, 32 bits: fast, stable across isolates, good enough to spread keys over nodes. */
export function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// Mixes the prefix hash with a node id (rendezvous / highest-random-weight hashing).
function rendezvous(prefixHash: number, nodeId: string): number {
  let h = fnv1a(nodeId, prefixHash ^ 0x9e3779b9);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}

const rotations = new Map<string, number>();

/**
 * Orders `nodes` by `strategy`:
 * - least-load: lowest loadScore first (ties in random order, so equal nodes share the traffic);
 * - prefix-affinity: rendezvous hashing of the prefix over the nodes, so the same prefix goes to the
 *   same node (vLLM's prefix cache hits) and a node leaving moves only its own prefixes; a node whose
 *   load exceeds the mean by more than the slack (and by at least one request) goes after the others,
 *   so a hot prefix cannot pile onto one node;
 * - round-robin: rotation per region;
 * - latency: lowest moving average of time to first token first (nodes without one last);
 * - random: uniform shuffle.
 */
export function orderNodes(strategy: RoutingStrategy, nodes: NodeEntry[], input: StrategyInput, rotationKey: string): NodeEntry[] {
  if (nodes.length <= 1) return nodes;
  switch (strategy) {
    case "random":
      return shuffle(nodes, input.random);
    case "round-robin": {
      const next = ((rotations.get(rotationKey) ?? -1) + 1) % nodes.length;
      rotations.set(rotationKey, next);
      return [...nodes.slice(next), ...nodes.slice(0, next)];
    }
    case "latency": {
      const ttft = (n: NodeEntry) => input.live[n.id]?.ttftEwmaMs ?? Infinity;
      return shuffle(nodes, input.random).sort((a, b) => ttft(a) - ttft(b));
    }
    case "prefix-affinity": {
      if (input.prefixHash === null) return orderNodes("least-load", nodes, input, rotationKey);
      const prefixHash = input.prefixHash;
      const ranked = [...nodes].sort((a, b) => rendezvous(prefixHash, b.id) - rendezvous(prefixHash, a.id));
      const load = (n: NodeEntry) => {
        const live = input.live[n.id];
        return live ? live.inFlight + (live.waiting ?? 0) + input.sentSince(n.id, live.at) : 0;
      };
      const mean = nodes.reduce((sum, n) => sum + load(n), 0) / nodes.length;
      const bound = Math.max(mean * (1 + input.affinitySlack), mean + 1);
      return [...ranked.filter((n) => load(n) <= bound), ...ranked.filter((n) => load(n) > bound)];
    }
    case "least-load": {
      const scored = shuffle(nodes, input.random).map((n) => ({ n, score: loadScore(n, input) }));
      return scored.sort((a, b) => a.score - b.score).map((s) => s.n);
    }
  }
}
