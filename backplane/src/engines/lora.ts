/**
 * vLLM's runtime LoRA routes (vllm/entrypoints/serve/lora/api_router.py): `POST /v1/load_lora_adapter`
 * `{lora_name, lora_path}` and `POST /v1/unload_lora_adapter` `{lora_name}`. Both answer 200 with a
 * plain string (no JSON), errors as vLLM's error JSON. They exist only when the engine runs with
 * `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; otherwise FastAPI answers 404 `{"detail":"Not Found"}`.
 */
import type { EngineConfig } from "../config.ts";
import { describeError } from "./http.ts";

/** Time an engine has to load or unload an adapter (it may fetch it from a hub first). */
export const LORA_CALL_TIMEOUT_MS = 120_000;

/**
 * What the engine said, as data:
 * - `ok`: loaded / unloaded (`message` is vLLM's success string);
 * - `disabled`: the route does not exist (runtime LoRA updating is off);
 * - `already_loaded` (load): vLLM's 400 "has already been loaded";
 * - `not_found`: load: no adapter at the path (vLLM's 404 NotFoundError); unload: not loaded;
 * - `rejected`: another 4xx (bad adapter, LoRA not enabled…);
 * - `failed`: 5xx, or the engine could not be reached.
 */
export type LoraCallOutcome =
  | { kind: "ok"; message: string }
  | { kind: "disabled" | "already_loaded" | "not_found" | "rejected" | "failed"; status: number | null; message: string };

/** The message of vLLM's error JSON (`{"error":{message}}`, older `{"message"}`, FastAPI's `{"detail"}`), else the text. */
function errorText(text: string): { message: string; detailOnly: boolean } {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown }; message?: unknown; detail?: unknown };
    if (typeof body.error?.message === "string") return { message: body.error.message, detailOnly: false };
    if (typeof body.message === "string") return { message: body.message, detailOnly: false };
    if (typeof body.detail === "string") return { message: body.detail, detailOnly: true };
  } catch {
    // Not JSON: the raw text below.
  }
  return { message: text.trim().slice(0, 500), detailOnly: false };
}

async function post(config: EngineConfig, path: string, body: unknown, signal: AbortSignal | undefined): Promise<LoraCallOutcome> {
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json, text/plain;q=0.9" };
  if (config.apiKey !== null) headers.authorization = `Bearer ${config.apiKey}`;
  const timeout = AbortSignal.timeout(LORA_CALL_TIMEOUT_MS);
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${config.url}${path}`, { method: "POST", headers, body: JSON.stringify(body), signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    text = await res.text();
  } catch (err) {
    return { kind: "failed", status: null, message: describeError(err, LORA_CALL_TIMEOUT_MS) };
  }
  if (res.ok) return { kind: "ok", message: text.trim() };
  const { message, detailOnly } = errorText(text);
  // The route missing is FastAPI's own 404 (`{"detail":"Not Found"}`); vLLM's NotFoundError has an error body.
  if (res.status === 404 && (detailOnly || text.trim() === "")) return { kind: "disabled", status: 404, message: message || "Not Found" };
  if (res.status === 404) return { kind: "not_found", status: 404, message };
  if (res.status === 400 && message.includes("has already been loaded")) return { kind: "already_loaded", status: 400, message };
  if (res.status >= 400 && res.status < 500) return { kind: "rejected", status: res.status, message };
  return { kind: "failed", status: res.status, message: message || `the engine answered ${res.status}` };
}

/** Loads adapter `name` from `path` on the engine. */
export function loadLoraAdapter(config: EngineConfig, name: string, path: string, signal?: AbortSignal): Promise<LoraCallOutcome> {
  return post(config, "/v1/load_lora_adapter", { lora_name: name, lora_path: path }, signal);
}

/** Unloads adapter `name` from the engine. */
export function unloadLoraAdapter(config: EngineConfig, name: string, signal?: AbortSignal): Promise<LoraCallOutcome> {
  return post(config, "/v1/unload_lora_adapter", { lora_name: name }, signal);
}
