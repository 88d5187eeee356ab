/**
 * Requests this isolate has in flight to each node, with when they were sent. Heartbeats report
 * load about once a second; the requests sent after a node's last heartbeat and still running are
 * load the node has not reported yet. Without them, every request between two heartbeats would see
 * the same "least loaded" node and pile onto it. Requests sent before the heartbeat are already in
 * its numbers; those of them that have ended since are remembered too (`endedSince`), for the edge
 * queue's count of a node's free slots (`loadSince`).
 */
const inFlight = new Map<string, Map<number, number>>();
let nextId = 0;

/**
 * Requests that ended recently, per node, oldest first: a request sent before a heartbeat and ended
 * after it is still in that heartbeat's count, though its slot is free (`endedSince`). Kept for
 * END_MEMORY_MS (a routing view the isolate has not refreshed while requests waited can be that old),
 * at most END_MEMORY_COUNT per node.
 */
const recentEnds = new Map<string, NodeEnds>();

interface NodeEnds {
  /** Ends in the order they happened. */
  list: { sentAt: number; endedAt: number }[];
  /** How many ends were pruned from the front of `list` (absolute index of its first entry). */
  pruned: number;
  /**
   * The last count asked (for the heartbeat of `liveAt`), up to absolute index `upto`: requests ask
   * about the same heartbeat until the next one, so each end is looked at once, not once per request.
   */
  memo: { liveAt: number; upto: number; count: number } | null;
}
const END_MEMORY_MS = 30_000;
const END_MEMORY_COUNT = 4_096;
const PRUNE_EVERY = 256;

/** Counts a request sent to `nodeId` now; call the returned function once it has finished (idempotent). */
export function trackSend(nodeId: string, now = Date.now()): () => void {
  const id = nextId++;
  let requests = inFlight.get(nodeId);
  if (!requests) {
    requests = new Map();
    inFlight.set(nodeId, requests);
  }
  requests.set(id, now);
  return () => {
    if (!requests.delete(id)) return;
    const endedAt = Date.now();
    let ends = recentEnds.get(nodeId);
    if (!ends) {
      ends = { list: [], pruned: 0, memo: null };
      recentEnds.set(nodeId, ends);
    }
    const list = ends.list;
    list.push({ sentAt: now, endedAt });
    // Pruned in batches (every PRUNE_EVERY ends, or past the count), so a request's end costs O(1) on average.
    if (list.length % PRUNE_EVERY === 0 || list.length > END_MEMORY_COUNT + PRUNE_EVERY) {
      let old = 0;
      while (old < list.length && ((list[old]?.endedAt ?? endedAt) < endedAt - END_MEMORY_MS || list.length - old > END_MEMORY_COUNT)) old++;
      if (old > 0) {
        list.splice(0, old);
        ends.pruned += old;
      }
    }
  };
}

/** Requests to `nodeId` sent before the heartbeat of `liveAt` that have ended since: counted by it, but their slots are free. */
export function endedSince(nodeId: string, liveAt: number): number {
  const ends = recentEnds.get(nodeId);
  if (!ends) return 0;
  const { list, pruned, memo } = ends;
  const upto = pruned + list.length;
  if (memo && memo.liveAt === liveAt && memo.upto >= pruned) {
    for (let i = memo.upto - pruned; i < list.length; i++) {
      const e = list[i];
      if (e && e.sentAt <= liveAt && e.endedAt > liveAt) memo.count++;
    }
    memo.upto = upto;
    return memo.count;
  }
  // Ends are in time order: only the ones after the heartbeat are looked at.
  let count = 0;
  for (let i = list.length - 1; i >= 0; i--) {
    const e = list[i];
    if (!e || e.endedAt <= liveAt) break;
    if (e.sentAt <= liveAt) count++;
  }
  ends.memo = { liveAt, upto, count };
  return count;
}

/**
 * The change in `nodeId`'s load since its heartbeat of `liveAt` that this isolate knows of: its
 * requests sent since and still running, less its requests the heartbeat counted that have ended.
 */
export function loadSince(nodeId: string, liveAt: number): number {
  return sentSince(nodeId, liveAt) - endedSince(nodeId, liveAt);
}

/** Requests to `nodeId` sent after the heartbeat of `liveAt` and still in flight. */
export function sentSince(nodeId: string, liveAt: number): number {
  const requests = inFlight.get(nodeId);
  if (!requests) return 0;
  let n = 0;
  for (const sentAt of requests.values()) if (sentAt > liveAt) n++;
  return n;
}
