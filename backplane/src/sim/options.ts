import { z } from "zod";
import { loraProblem, type SimLora } from "./lora.ts";
import { scriptEntrySchema, type SimScriptEntry } from "./script.ts";

/**
 * A model the simulated engine serves: a generator (chat/completions), an embedding (pooling) model,
 * or a Whisper-like speech-to-text model (`/v1/audio/transcriptions` and `/translations` only).
 */
export interface SimModel {
  name: string;
  kind: "generate" | "embed" | "transcribe";
  maxModelLen: number;
  /** Accepts image inputs (a multimodal model); a text-only model answers images with vLLM's 400. */
  vision?: boolean;
  /** A reasoning model: chat answers start with reasoning, served as `reasoning_content`. */
  reasoning?: boolean;
}

/** vLLM's --scheduling-policy values. */
export type SchedulingPolicy = "fcfs" | "priority";

/** Settings of the simulated vLLM engine; see docs/simulator.md. */
export interface SimOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  models: SimModel[];
  /** Time to first token (queue wait excluded), in ms. */
  ttftMs: number;
  /** Prefill time per prompt token not found in the prefix cache, added to the time to first token (ms; 0 = off). */
  prefillMsPerToken: number;
  /** Delay between two generated tokens, in ms. */
  interTokenMs: number;
  /** Time an embeddings request takes before it is answered (one forward pass of the batch), in ms. */
  embedMs: number;
  /** Tokens generated before the model "emits EOS" (EOS included), when no limit cuts it first. */
  outputTokens: number;
  /** Requests generating at once; the rest wait in vLLM's scheduler queue (see schedulingPolicy). */
  maxConcurrency: number;
  /**
   * vLLM's --scheduling-policy: `fcfs` (the default) serves waiting requests in arrival order and
   * refuses a non-zero `priority` with a 400; `priority` serves them by (priority, arrival).
   */
  schedulingPolicy: SchedulingPolicy;
  seed: number;
  embeddingDimensions: number;
  /** Like vLLM's --api-key: /v1/* then needs `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** LoRA adapters served from the start (vLLM's --lora-modules; lora.ts). */
  loras: SimLora[];
  /** Registers the runtime load/unload routes (vLLM's VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). */
  runtimeLora: boolean;
  /** Scripted chat answers, for tests (script.ts): the first entry matching the system prompt and last user message answers. */
  script: SimScriptEntry[];
  /** The dims of one block's K and V on the federated-attention routes (fedattn/sim-routes.ts); tensors are [blocks, ...this]. */
  fedattnShape: number[];
}

/** Default max_model_len of a model given without one (448 is openai/whisper's decoder length). */
export const DEFAULT_MAX_MODEL_LEN = { generate: 8192, embed: 512, transcribe: 448 } as const;

const DEFAULTS: SimOptions = {
  host: "127.0.0.1",
  port: 0,
  models: [
    { name: "sim-llama-8b", kind: "generate", maxModelLen: DEFAULT_MAX_MODEL_LEN.generate },
    { name: "sim-embed", kind: "embed", maxModelLen: DEFAULT_MAX_MODEL_LEN.embed },
  ],
  ttftMs: 20,
  prefillMsPerToken: 0,
  interTokenMs: 5,
  embedMs: 0,
  outputTokens: 32,
  maxConcurrency: 16,
  schedulingPolicy: "fcfs",
  seed: 0,
  embeddingDimensions: 384,
  loras: [],
  runtimeLora: false,
  script: [],
  fedattnShape: [16, 64],
};

const modelSchema = z.object({
  name: z.string().regex(/^\S+$/, "must be a non-empty name without spaces"),
  kind: z.enum(["generate", "embed", "transcribe"]),
  maxModelLen: z.number().int().min(2).max(10_000_000),
  vision: z.boolean().optional(),
  reasoning: z.boolean().optional(),
}).refine((m) => m.kind === "generate" || (m.vision !== true && m.reasoning !== true), "vision and reasoning apply to generate models only");

const schema = z.object({
  host: z.string().min(1),
  port: z.number().int().min(0).max(65535),
  models: z
    .array(modelSchema)
    .min(1, "must list at least one model")
    .refine((models) => new Set(models.map((m) => m.name)).size === models.length, "model names must be unique"),
  ttftMs: z.number().min(0).max(3_600_000),
  prefillMsPerToken: z.number().min(0).max(60_000),
  interTokenMs: z.number().min(0).max(3_600_000),
  embedMs: z.number().min(0).max(3_600_000),
  outputTokens: z.number().int().min(1).max(10_000_000),
  maxConcurrency: z.number().int().min(1).max(1_000_000),
  schedulingPolicy: z.enum(["fcfs", "priority"]),
  seed: z.number().int(),
  embeddingDimensions: z.number().int().min(1).max(65_536),
  apiKey: z.string().min(1).optional(),
  loras: z.array(z.object({ name: z.string().regex(/^\S+$/, "must be a non-empty name without spaces"), base: z.string().min(1), path: z.string().min(1) })),
  runtimeLora: z.boolean(),
  script: z.array(scriptEntrySchema),
  fedattnShape: z.array(z.number().int().min(1).max(1_000_000)).min(1).max(3),
});

/** Thrown for an invalid option; the message names the option. */
export class SimOptionsError extends Error {
  override name = "SimOptionsError";
}

/** Fills defaults and validates; throws SimOptionsError naming the first bad option. */
export function simOptions(partial: Partial<SimOptions> = {}): SimOptions {
  const merged: Record<string, unknown> = { ...DEFAULTS, models: DEFAULTS.models.map((m) => ({ ...m })) };
  for (const [key, value] of Object.entries(partial)) if (value !== undefined) merged[key] = value;
  const parsed = schema.safeParse(merged);
  if (parsed.success) {
    const problem = loraProblem(parsed.data);
    if (problem !== null) throw new SimOptionsError(`Invalid simulator option loras: ${problem}`);
    const { apiKey, ...rest } = parsed.data;
    return apiKey === undefined ? rest : { ...rest, apiKey };
  }
  const issue = parsed.error.issues[0];
  const where = issue ? issue.path.join(".") : "options";
  throw new SimOptionsError(`Invalid simulator option ${where || "options"}: ${issue ? issue.message : "invalid"}`);
}
