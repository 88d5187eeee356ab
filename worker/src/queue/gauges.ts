import type { AdminContext } from "../admin/http.ts";
import { readFleetLive } from "../nodes/admin-state.ts";
import { PRIORITY_CLASSES } from "../priority/class.ts";
import type { QueueDepth } from "./edge-queue.ts";
import { QUEUE_GAUGES } from "../platform/metric-names.ts";

/** Deadline of one queue object's depth call during a scrape. */
const DEPTH_CALL_MS = 500;

/**
 * `switchyard_edge_queue_depth{model,class}` for `GET /admin/metrics`: how many requests wait in each
 * model's edge queue (docs/edge-queue.md), asked of the queue objects of the models the live nodes
 * serve, in parallel, each within 500 ms. A model whose object does not answer in time is left out.
 */
export async function renderQueueGauges(c: AdminContext): Promise<string> {
  const ns = c.get("deps").edgeQueue;
  const { live } = await readFleetLive(c);
  const models = [...new Set(Object.values(live).flatMap((l) => l.models))].sort();
  const depths = await Promise.all(
    models.map(async (model): Promise<[string, QueueDepth] | null> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), DEPTH_CALL_MS)));
      const depth = Promise.resolve(ns.get(ns.idFromName(model)).depth()).then((d): [string, QueueDepth] => [model, d], () => null);
      const answer = await Promise.race([depth, deadline]);
      clearTimeout(timer);
      return answer;
    }),
  );
  const [name] = QUEUE_GAUGES;
  const lines = [`# HELP ${name} Requests waiting in the model's edge queue for a node, by class.`, `# TYPE ${name} gauge`];
  for (const entry of depths) {
    if (!entry) continue;
    const [model, depth] = entry;
    for (const cls of PRIORITY_CLASSES) lines.push(`${name}{model="${model.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}",class="${cls}"} ${depth.byClass[cls] ?? 0}`);
  }
  return `${lines.join("\n")}\n`;
}
