import { usageRecords } from "../../../schema/tables/index.ts";
import type { KeyIdentity } from "../auth/identity.ts";
import type { StreamOutcome } from "../proxy/usage.ts";
import { audioMicros } from "../limits/pricing.ts";
import { costClass, type Endpoint } from "../proxy/validate.ts";
import type { ModelEntry, NodeEntry } from "../routing/snapshot.ts";

/** One request's usage, as written to `usage_records`. */
export type UsageRow = typeof usageRecords.$inferInsert;

/**
 * Cost in micro-dollars: prices are USD per million tokens, so tokens × price is exactly micro-USD.
 * Cached prompt tokens use the cached price when the model has one; the serving region's price
 * multiplier (regions.price_multiplier, default 1) applies to the whole. Audio adds its duration at
 * the model's price per minute.
 */
export function costMicros(model: ModelEntry, promptTokens: number, completionTokens: number, cachedPromptTokens: number, multiplier = 1, audioMs = 0): number {
  const cachedPrice = model.cachedInputPrice ?? model.inputPrice;
  const uncached = Math.max(0, promptTokens - cachedPromptTokens);
  return Math.round((uncached * model.inputPrice + cachedPromptTokens * cachedPrice + completionTokens * model.outputPrice + audioMicros(model, audioMs)) * multiplier);
}

/** Builds the usage row for a finished request. */
export function usageRow(args: {
  requestId: string;
  startedAt: number;
  endedAt: number;
  identity: KeyIdentity;
  endpoint: Endpoint;
  model: ModelEntry;
  node: NodeEntry | null;
  httpStatus: number;
  streamed: boolean;
  outcome: StreamOutcome;
  /** The serving region's price multiplier (1 when unknown). */
  priceMultiplier?: number;
  /** The gateway's estimate of the prompt's tokens (validate.ts), for a response cut before the engine's usage. */
  promptTokensEstimate?: number;
  /** Audio in the upload (transcriptions, translations), in ms. */
  audioMs?: number;
  /** The agent streaming profile that cut the stream (profiles/), if any. */
  streamProfile?: string | null;
}): UsageRow {
  const { outcome, identity, model } = args;
  // Without the engine's usage, a request whose response had started has had its prompt processed:
  // count the estimate. One that never produced a byte counts nothing.
  const promptTokens = outcome.usage?.promptTokens ?? (outcome.firstByteAt === null ? 0 : (args.promptTokensEstimate ?? 0));
  // Without usage (a cut stream), delivered content chunks are the best lower bound: one token each.
  const generates = costClass(args.endpoint) === "generate" || costClass(args.endpoint) === "audio";
  const completionTokens = outcome.usage?.completionTokens ?? (generates ? outcome.deliveredChunks : 0);
  const cachedPromptTokens = outcome.usage?.cachedPromptTokens ?? 0;
  // The engine heard the audio once it answered (like a prompt, processed before any output); a
  // request that never produced a byte heard nothing billable.
  const audioMs = outcome.usage !== null || outcome.firstByteAt !== null ? (args.audioMs ?? 0) : 0;
  return {
    id: args.requestId,
    at: new Date(args.startedAt),
    tenantId: identity.tenantId,
    environmentId: identity.environmentId,
    apiKeyId: identity.keyId,
    endpoint: args.endpoint,
    model: model.id,
    regionId: args.node?.regionId ?? null,
    nodeId: args.node?.id ?? null,
    status: outcome.status,
    httpStatus: args.httpStatus,
    streamed: args.streamed,
    promptTokens,
    completionTokens,
    cachedPromptTokens,
    audioMs,
    ttftMs: outcome.firstByteAt === null ? null : outcome.firstByteAt - args.startedAt,
    latencyMs: args.endedAt - args.startedAt,
    costMicros: costMicros(model, promptTokens, completionTokens, cachedPromptTokens, args.priceMultiplier ?? 1, audioMs),
    errorCode: outcome.errorCode,
    streamProfile: args.streamProfile ?? null,
  };
}
