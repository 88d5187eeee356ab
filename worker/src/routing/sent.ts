/**
 * Requests this isolate has in flight to each node, with when they were sent. Heartbeats report
 * load about once a second; the requests sent after a node's last heartbeat and still running are
 * load the node has not reported yet. Without them, every request between two heartbeats would see
 * the same "least loaded" node and pile onto it. Requests sent before the heartbeat are already in
 * its numbers, and finished ones count nowhere.
 */
const inFlight = new Map<string, Map<number, number>>();
let nextId = 0;

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
    requests.delete(id);
  };
}

/** Requests to `nodeId` sent after the heartbeat of `liveAt` and still in flight. */
export function sentSince(nodeId: string, liveAt: number): number {
  const requests = inFlight.get(nodeId);
  if (!requests) return 0;
  let n = 0;
  for (const sentAt of requests.values()) if (sentAt > liveAt) n++;
  return n;
}
