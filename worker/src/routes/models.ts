import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { isEligible } from "../routing/pick.ts";
import type { ModelEntry } from "../routing/snapshot.ts";
import { catalogueModel, keyAllows } from "../routing/aliases.ts";
import { councilsFor } from "../council/config.ts";
import { COUNCIL_MODEL_PREFIX } from "../council/routes.ts";

/**
 * `GET /v1/models`: the catalogue models this key may use, in OpenAI's list shape plus gateway
 * metadata. A LoRA adapter is listed like any model, with `parent` naming its base (vLLM's field;
 * null for other models); one that no node has loaded is `available` when it can be loaded on
 * demand (it has an adapter_source and a node serves its base: routing/adapters.ts).
 * Each alias of a model (routing/aliases.ts) is listed as an entry of its own, as OpenAI clients
 * check a name against the list: `root` names the model it stands for (every entry's `root` is the
 * model id requests are served, metered and answered under) and `alias_of` is that id (null on the
 * model's own entry, which lists its `aliases`).
 */
export async function listModels(c: Context<AppEnv>): Promise<Response> {
  const identity = c.get("identity");
  const routing = c.get("routing");
  const now = Date.now();
  const served = (model: string) => routing.snapshot.nodes.some((n) => isEligible(n, routing.live[n.id], model, now));
  const available = (m: ModelEntry) => served(m.id) || (!!m.baseModel && !!m.adapterSource && served(m.baseModel));
  const entry = (m: ModelEntry, id: string) => ({
    id,
    object: "model" as const,
    created: m.createdAt,
    owned_by: "switchyard",
    root: m.id,
    parent: m.baseModel ?? null,
    alias_of: id === m.id ? null : m.id,
    aliases: id === m.id ? (m.aliases ?? []) : [],
    kind: m.kind,
    family: m.family,
    context_length: m.contextLength,
    pricing: { input_per_million: m.inputPrice, output_per_million: m.outputPrice, cached_input_per_million: m.cachedInputPrice, audio_per_minute: m.audioPrice ?? null },
    available: available(m),
  });
  const data = Object.values(routing.snapshot.models)
    .filter((m) => keyAllows(identity.allowedModels, m))
    .flatMap((m) => [m.id, ...(m.aliases ?? [])].map((id) => entry(m, id)))
    .sort((a, b) => a.id.localeCompare(b.id));
  return c.json({ object: "list", data: [...data, ...(await councilEntries(c, available))] });
}

/**
 * The councils this key may ask as a chat model (`council/<name>`, docs/council.md): with the
 * `chat` scope, and every specialist's model allowed to the key. Listed after the models.
 */
async function councilEntries(c: Context<AppEnv>, available: (m: ModelEntry) => boolean) {
  const identity = c.get("identity");
  if (!identity.scopes.includes("chat")) return [];
  const snapshot = c.get("routing").snapshot;
  const councils = await councilsFor(c.get("deps"), identity.tenantId, snapshot);
  return councils.flatMap((council) => {
    const models = council.specialists.map((s) => catalogueModel(snapshot, s.model));
    if (models.some((m) => !m || !keyAllows(identity.allowedModels, m))) return [];
    const id = `${COUNCIL_MODEL_PREFIX}${council.name}`;
    return [
      {
        id,
        object: "model" as const,
        created: 0,
        owned_by: "switchyard",
        root: id,
        parent: null,
        alias_of: null,
        aliases: [],
        kind: "council",
        specialists: council.specialists.map((s) => s.name),
        synthesiser: council.synthesiser,
        available: models.every((m) => m !== null && available(m)),
      },
    ];
  });
}
