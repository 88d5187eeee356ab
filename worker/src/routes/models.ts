import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { isEligible } from "../routing/pick.ts";
import type { ModelEntry } from "../routing/snapshot.ts";

/**
 * `GET /v1/models`: the catalogue models this key may use, in OpenAI's list shape plus gateway
 * metadata. A LoRA adapter is listed like any model, with `parent` naming its base (vLLM's field;
 * null for other models); one that no node has loaded is `available` when it can be loaded on
 * demand (it has an adapter_source and a node serves its base: routing/adapters.ts).
 */
export function listModels(c: Context<AppEnv>): Response {
  const identity = c.get("identity");
  const routing = c.get("routing");
  const now = Date.now();
  const served = (model: string) => routing.snapshot.nodes.some((n) => isEligible(n, routing.live[n.id], model, now));
  const available = (m: ModelEntry) => served(m.id) || (!!m.baseModel && !!m.adapterSource && served(m.baseModel));
  const data = Object.values(routing.snapshot.models)
    .filter((m) => identity.allowedModels === null || identity.allowedModels.includes(m.id))
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((m) => ({
      id: m.id,
      object: "model" as const,
      created: m.createdAt,
      owned_by: "switchyard",
      parent: m.baseModel ?? null,
      kind: m.kind,
      family: m.family,
      context_length: m.contextLength,
      pricing: { input_per_million: m.inputPrice, output_per_million: m.outputPrice, cached_input_per_million: m.cachedInputPrice, audio_per_minute: m.audioPrice ?? null },
      available: available(m),
    }));
  return c.json({ object: "list", data });
}
