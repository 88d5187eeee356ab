import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { isEligible } from "../routing/pick.ts";

/** `GET /v1/models`: the catalogue models this key may use, in OpenAI's list shape plus gateway metadata. */
export function listModels(c: Context<AppEnv>): Response {
  const identity = c.get("identity");
  const routing = c.get("routing");
  const now = Date.now();
  const available = (model: string) => routing.snapshot.nodes.some((n) => isEligible(n, routing.live[n.id], model, now));
  const data = Object.values(routing.snapshot.models)
    .filter((m) => identity.allowedModels === null || identity.allowedModels.includes(m.id))
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((m) => ({
      id: m.id,
      object: "model" as const,
      created: m.createdAt,
      owned_by: "switchyard",
      kind: m.kind,
      family: m.family,
      context_length: m.contextLength,
      pricing: { input_per_million: m.inputPrice, output_per_million: m.outputPrice, cached_input_per_million: m.cachedInputPrice },
      available: available(m.id),
    }));
  return c.json({ object: "list", data });
}
