import { describeError as describeAny } from "../describe-error.ts";
import type { EngineConfig } from "../config.ts";

/** Default time an engine has to answer a probe or scrape. */
export const DEFAULT_ENGINE_TIMEOUT_MS = 5_000;

/** A probe step that failed with a message worth showing in logs and heartbeats. */
export class EngineHttpError extends Error {
  override name = "EngineHttpError";
  readonly status: number | null;
  constructor(message: string, status: number | null = null) {
    super(message);
    this.status = status;
  }
}

/**
 * GETs `path` from the engine with its bearer key, bounded by the caller's signal and `timeoutMs`.
 * A network-level failure is retried once at once: a pooled keep-alive socket the engine closed a
 * moment ago (uvicorn drops idle ones after 5 s) fails with "other side closed", and one such blip
 * must not mark a live engine unhealthy for a whole probe interval. A dead engine fails twice.
 */
export async function engineGet(config: EngineConfig, path: string, signal: AbortSignal, timeoutMs: number): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json, text/plain;q=0.9, */*;q=0.5" };
  if (config.apiKey !== null) headers.authorization = `Bearer ${config.apiKey}`;
  const bounded = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
  try {
    return await fetch(`${config.url}${path}`, { headers, signal: bounded });
  } catch (err) {
    if (bounded.aborted) throw err;
    return fetch(`${config.url}${path}`, { headers, signal: bounded });
  }
}

/** GETs JSON; a non-2xx status or a body that is not JSON becomes an EngineHttpError. */
export async function engineGetJson(config: EngineConfig, path: string, signal: AbortSignal, timeoutMs: number): Promise<unknown> {
  const res = await engineGet(config, path, signal, timeoutMs);
  if (!res.ok) {
    await res.body?.cancel();
    throw new EngineHttpError(`GET ${path} answered ${res.status}`, res.status);
  }
  try {
    return await res.json();
  } catch {
    throw new EngineHttpError(`GET ${path} did not return JSON`, res.status);
  }
}

/** One line for logs: undici hides the useful part (ECONNREFUSED, ENOTFOUND…) in `cause`. */
export function describeError(err: unknown, timeoutMs: number): string {
  return err instanceof EngineHttpError ? err.message : describeAny(err, timeoutMs);
}

/**
 * `data[].id` of an OpenAI-style `/v1/models` list, or an error when the shape is wrong. vLLM lists
 * its LoRA adapters there too (cards with a `parent`): their ids stay in this list, since requests
 * name an adapter as their model; `loraAdaptersFromList` tells them apart.
 */
export function modelIdsFromList(body: unknown): string[] {
  const data = typeof body === "object" && body !== null ? (body as { data?: unknown }).data : undefined;
  if (!Array.isArray(data)) throw new EngineHttpError("GET /v1/models did not return a `data` list");
  const ids: string[] = [];
  for (const entry of data as unknown[]) {
    const id = typeof entry === "object" && entry !== null ? (entry as { id?: unknown }).id : undefined;
    if (typeof id === "string" && id !== "") ids.push(id);
  }
  return ids;
}

/** A LoRA adapter an engine serves: its name (the model id requests use) and its base model. */
export interface LoraAdapter {
  name: string;
  base: string;
  /** Where the engine loaded it from (vLLM's card `root`: the `lora_path`), when it says. */
  source: string | null;
}

/**
 * The LoRA adapters of a vLLM `/v1/models` list: the cards whose `parent` names a base model
 * (vLLM's serving_models.py `show_available_models`: base models have `parent: null`, adapters
 * the base they apply to and `root` = the adapter's path).
 */
export function loraAdaptersFromList(body: unknown): LoraAdapter[] {
  const data = typeof body === "object" && body !== null ? (body as { data?: unknown }).data : undefined;
  if (!Array.isArray(data)) return [];
  const adapters: LoraAdapter[] = [];
  for (const entry of data as unknown[]) {
    if (typeof entry !== "object" || entry === null) continue;
    const { id, parent, root } = entry as { id?: unknown; parent?: unknown; root?: unknown };
    if (typeof id !== "string" || id === "" || typeof parent !== "string" || parent === "" || parent === id) continue;
    adapters.push({ name: id, base: parent, source: typeof root === "string" && root !== "" ? root : null });
  }
  return adapters;
}
