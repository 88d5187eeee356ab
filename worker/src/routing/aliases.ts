/**
 * Model aliases: other names a catalogue model answers to on every route (`phi3` for `phi3:latest`,
 * `nomic-embed-text` for `nomic-embed-text:latest`). A request naming an alias is served, limited,
 * metered and recorded under the model's id, and the engine is sent the id, the name it serves.
 * The alias index travels in the routing snapshot (snapshot.ts), so resolving a name is a map lookup.
 */
import { boundaryOf, encodeMultipart, parseMultipart } from "../audio/multipart.ts";
import type { ProxyRequest } from "../proxy/validate.ts";
import type { ModelEntry, RoutingSnapshot } from "./snapshot.ts";

/** The alias index of a catalogue: alias → model id. */
export function aliasIndex(models: Iterable<Pick<ModelEntry, "id" | "aliases">>): Record<string, string> {
  const index: Record<string, string> = {};
  for (const m of models) for (const alias of m.aliases ?? []) index[alias] = m.id;
  return index;
}

/** The catalogue model `name` names (its id, or one of its aliases), or null. */
export function catalogueModel(snapshot: RoutingSnapshot, name: string): ModelEntry | null {
  const direct = snapshot.models[name];
  if (direct) return direct;
  const id = snapshot.aliases?.[name];
  return id === undefined ? null : (snapshot.models[id] ?? null);
}

/**
 * Whether a key restricted to `allowed` (null: every model) may use `model`. An entry naming the
 * model's id or any of its aliases allows the model under all its names.
 */
export function keyAllows(allowed: readonly string[] | null, model: ModelEntry): boolean {
  if (allowed === null) return true;
  return allowed.some((name) => name === model.id || (model.aliases ?? []).includes(name));
}

/**
 * `req` as the engine must get it: under the model's id. Unchanged (no copy, no re-encoding) when
 * the client named the id; otherwise the body is encoded again with the id (a JSON body parsed and
 * written again; a multipart upload re-framed with its `model` field replaced). The engine then
 * answers with the id in its `model` field, which the client receives as it is.
 */
export function underModelId(req: ProxyRequest, id: string): ProxyRequest {
  if (req.model === id) return req;
  const renamed = { ...req, model: id };
  if (req.upstreamContentType !== undefined && typeof req.upstreamBody !== "string") {
    const boundary = boundaryOf(req.upstreamContentType);
    if (boundary === null) return renamed;
    const parts = parseMultipart(req.upstreamBody, boundary, Number.MAX_SAFE_INTEGER).map((p) => (p.name === "model" && "value" in p ? { name: "model", value: id } : p));
    const upload = encodeMultipart(parts);
    return { ...renamed, upstreamBody: upload.body, upstreamContentType: upload.contentType };
  }
  const text = typeof req.upstreamBody === "string" ? req.upstreamBody : new TextDecoder().decode(req.upstreamBody);
  // The validators accepted it as a JSON object, so this parse cannot fail.
  const body = JSON.parse(text) as Record<string, unknown>;
  body.model = id;
  return { ...renamed, upstreamBody: JSON.stringify(body) };
}
