/**
 * A participant's calls to its engine: read K/V for a block range, apply an aggregate. Only the
 * simulated engine can (its `/switchyard/fedattn/*` routes, sim-routes.ts): vLLM, llama.cpp, Ollama
 * and OpenAI-compatible servers have no API that exports or imports attention K/V.
 */
import type { EngineKind } from "../config.ts";
import { describeError, errorMessage } from "../describe-error.ts";
import { FedattnError } from "./errors.ts";
import { APPLY_PATH, KV_PATH } from "./sim-routes.ts";

/** The engine a participant reads K/V from. */
export interface KvEngine {
  kind: EngineKind;
  /** Base URL, e.g. http://127.0.0.1:8000. */
  url: string;
  /** Name in messages (default the kind). */
  id?: string;
  apiKey?: string | null;
}

/** What the engine answers once an aggregate is applied. */
export interface AppliedChecksums {
  kChecksum: number;
  vChecksum: number;
}

/** What to ask the engine for. */
export interface KvRequest {
  prompt: string;
  model?: string;
  blockStart: number;
  blockEnd: number;
  /** Dims of one block; the engine's own default (the simulator's --fedattn-shape) when absent. */
  shape?: readonly number[];
  weight: number;
}

/** Refuses, with what to do instead, an engine that cannot export K/V. */
export function checkKvEngine(engine: KvEngine): void {
  if (engine.kind === "sim") return;
  throw new FedattnError(
    "engine_unsupported",
    `Engine ${engine.id ?? engine.kind} (kind=${engine.kind}) cannot take part in federated attention: only the simulated engine (kind=sim) exposes K/V today; ${engine.kind} has no API to export or import attention K/V. Point the participant at a simulator (npm run backplane -- sim) configured as kind=sim.`,
  );
}

async function engineCall(engine: KvEngine, path: string, init: { body: string | Uint8Array<ArrayBuffer>; contentType: string }, timeoutMs: number, fetchFn: typeof fetch): Promise<Response> {
  const headers: Record<string, string> = { "content-type": init.contentType };
  if (engine.apiKey) headers.authorization = `Bearer ${engine.apiKey}`;
  const url = `${engine.url.replace(/\/+$/, "")}${path}`;
  let res: Response;
  try {
    res = await fetchFn(url, { method: "POST", headers, body: init.body, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new FedattnError("engine_error", `POST ${url}: the engine did not answer (${describeError(err, timeoutMs)}). Is the simulator running there?`);
  }
  if (res.ok) return res;
  const said = errorMessage(await res.text().catch(() => ""));
  if (res.status === 404) {
    throw new FedattnError("engine_unsupported", `POST ${url} answered 404: this engine has no federated-attention routes. Only the simulated engine (npm run backplane -- sim) exposes K/V today.`, 404);
  }
  throw new FedattnError("engine_error", `POST ${url}: the engine answered ${res.status}: ${said || "no reason given"}`, res.status);
}

/** The engine's K/V for a block range, as one tensor message ready to contribute. */
export async function fetchKv(engine: KvEngine, request: KvRequest, timeoutMs: number, fetchFn: typeof fetch = fetch): Promise<Uint8Array<ArrayBuffer>> {
  checkKvEngine(engine);
  const body = JSON.stringify({
    ...(request.model === undefined ? {} : { model: request.model }),
    prompt: request.prompt,
    block_start: request.blockStart,
    block_end: request.blockEnd,
    ...(request.shape === undefined ? {} : { shape: request.shape }),
    weight: request.weight,
  });
  const res = await engineCall(engine, KV_PATH, { body, contentType: "application/json" }, timeoutMs, fetchFn);
  return new Uint8Array(await res.arrayBuffer());
}

/** Applies an aggregate (one tensor message) to the engine; its checksums of what it now holds. */
export async function applyAggregate(engine: KvEngine, message: Uint8Array<ArrayBuffer>, timeoutMs: number, fetchFn: typeof fetch = fetch): Promise<AppliedChecksums> {
  checkKvEngine(engine);
  const res = await engineCall(engine, APPLY_PATH, { body: message, contentType: "application/octet-stream" }, timeoutMs, fetchFn);
  const json = (await res.json()) as { applied?: unknown; k_checksum?: unknown; v_checksum?: unknown };
  if (json.applied !== true || typeof json.k_checksum !== "number" || typeof json.v_checksum !== "number") {
    throw new FedattnError("engine_error", `POST ${APPLY_PATH}: the engine's answer is not {applied: true, k_checksum, v_checksum}: ${JSON.stringify(json).slice(0, 200)}`);
  }
  return { kChecksum: json.k_checksum, vChecksum: json.v_checksum };
}
