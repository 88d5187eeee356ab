/**
 * vLLM's `priority` request field on its way to an engine (docs/priority.md). The gateway sends each
 * request's rank in a signed header (schema/contracts/priority.ts); an engine configured with
 * `priority=1` (vLLM's `--scheduling-policy priority`) gets it in the body, overriding whatever the
 * body said. Any other engine gets no `priority` at all: vLLM refuses a non-zero one under fcfs with a
 * 400, and a client's own value must never reorder a shared engine's queue either way.
 */
import type { IncomingMessage } from "node:http";
import { DEFAULT_PRIORITY_RANK, PRIORITY_RANK_HEADER, verifyPriorityRank } from "../../../schema/contracts/priority.ts";
import { NONCE_HEADER, type SigningKey } from "../../../schema/contracts/signing.ts";

/**
 * Engine paths whose request has vLLM's `priority` field (api-surfaces.md §4.5: chat, completions,
 * embeddings, score, rerank, classification, responses). Tokenizing, audio and Anthropic's Messages
 * are left out: their requests have no such field.
 */
export const PRIORITY_PATHS: ReadonlySet<string> = new Set([
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/embeddings",
  "/v1/responses",
  "/score",
  "/v1/score",
  "/rerank",
  "/v1/rerank",
  "/v2/rerank",
  "/classify",
]);

/**
 * The gateway's rank for a request whose signature was verified: the header's rank when its MAC
 * matches the request's nonce, else null (absent, or forged: logged by the caller's metrics as nothing
 * more than a request without a rank, since the signature itself was valid).
 */
export async function gatewayRank(key: SigningKey, req: IncomingMessage): Promise<number | null> {
  const value = req.headers[PRIORITY_RANK_HEADER];
  const nonce = req.headers[NONCE_HEADER];
  if (typeof value !== "string" || typeof nonce !== "string") return null;
  return verifyPriorityRank(key, nonce, value);
}

/**
 * The body an engine gets: with `priority` set to the gateway's rank (DEFAULT_PRIORITY_RANK without
 * one) on a priority-scheduled engine and a path that takes it; without any `priority` otherwise.
 * `fields` is the body as parsed; the body is re-encoded only when it must change.
 */
export function engineBody(body: Uint8Array, fields: Record<string, unknown>, path: string, prioritized: boolean, rank: number | null): Uint8Array {
  const target = prioritized && PRIORITY_PATHS.has(path) ? (rank ?? DEFAULT_PRIORITY_RANK) : undefined;
  if (target === undefined ? !Object.hasOwn(fields, "priority") : fields.priority === target) return body;
  // The body may differ from `fields` (a streaming profile's rewrite): change the body as it is now.
  const current = JSON.parse(Buffer.from(body).toString("utf8")) as Record<string, unknown>;
  if (target === undefined) delete current.priority;
  else current.priority = target;
  return Buffer.from(JSON.stringify(current), "utf8");
}
