import type { FedattnSimState } from "../fedattn/sim-routes.ts";
import { badRequest, modelNotFound, type SimHttpError } from "./errors.ts";
import { loraBase, type SimLora } from "./lora.ts";
import type { ModelMetrics } from "./metrics.ts";
import type { SimModel, SimOptions } from "./options.ts";
import type { Scheduler } from "./scheduler.ts";

/** A request the engine is working on or holding in its queue; close() aborts it. */
export interface LiveJob {
  readonly waiting: boolean;
  abort(): void;
}

/** The simulated engine's shared state, owned by the server. */
export interface EngineState {
  options: SimOptions;
  scheduler: Scheduler;
  metrics: Map<string, ModelMetrics>;
  live: Set<LiveJob>;
  /** LoRA adapters served now, by name (lora.ts). */
  loras: Map<string, SimLora>;
  /** The federated-attention states applied to the engine (Switchyard's extension, fedattn/sim-routes.ts). */
  fedattn: FedattnSimState;
}

/** Which API a request is for, to tell a generator from a pooling or a speech-to-text model. */
export type ApiKind = "chat" | "completion" | "embedding" | "transcription" | "translation";

const API_NAMES: Record<ApiKind, string> = {
  chat: "Chat Completions API",
  completion: "Completions API",
  embedding: "Embeddings API",
  transcription: "Transcriptions API",
  translation: "Translations API",
};

/** The model kind that serves each API. */
const API_KINDS: Record<ApiKind, SimModel["kind"]> = {
  chat: "generate",
  completion: "generate",
  embedding: "embed",
  transcription: "transcribe",
  translation: "transcribe",
};

/**
 * Finds the served model a request names. One vLLM serves one model and `model` may be
 * omitted; since the simulator serves several, an omitted name means the first model of the
 * kind the endpoint needs (else the first model, which then fails like vLLM does). A LoRA adapter's
 * name finds its base model.
 */
export function resolveModel(state: EngineState, name: string | null, api: ApiKind): ModelMetrics {
  const wanted = API_KINDS[api];
  let found: ModelMetrics | undefined;
  if (name === null) {
    const all = [...state.metrics.values()];
    found = all.find((m) => m.model.kind === wanted) ?? all[0];
  } else {
    found = state.metrics.get(name) ?? loraBase(state, name);
  }
  if (!found) throw modelNotFound(name ?? "");
  if (found.model.kind !== wanted) throw unsupported(api);
  return found;
}

/** vLLM's answer when the served model has no handler for an endpoint (api_server.py). */
function unsupported(api: ApiKind): SimHttpError {
  return badRequest(`The model does not support ${API_NAMES[api]}`);
}
