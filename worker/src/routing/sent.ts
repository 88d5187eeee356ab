/**
 * Requests this isolate sent to each node since the node's last heartbeat. Heartbeats report load
 * about once a second; without this, every request between two heartbeats would see the same
 * "least loaded" node and pile onto it.
 */
const sent = new Map<string, { liveAt: number; count: number }>();

/** Counts a request sent to `nodeId`, whose current live entry is from `liveAt`. */
export function recordSend(nodeId: string, liveAt: number): void {
  const entry = sent.get(nodeId);
  if (entry && entry.liveAt === liveAt) entry.count++;
  else sent.set(nodeId, { liveAt, count: 1 });
}

/** Requests sent to `nodeId` since the heartbeat of `liveAt` (0 once a newer heartbeat is seen). */
export function sentSince(nodeId: string, liveAt: number): number {
  const entry = sent.get(nodeId);
  return entry && entry.liveAt === liveAt ? entry.count : 0;
}
