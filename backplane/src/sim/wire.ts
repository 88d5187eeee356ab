import type { ChoiceMessage, TokenDelta } from "./output.ts";

/**
 * vLLM's response bodies, byte for byte. Field order is pydantic's declaration order
 * (protocol.py); which fields appear follows how serving_chat.py / serving_completion.py
 * serialise each message:
 * - chat stream chunks: model_dump_json(exclude_unset=True), so only the fields vLLM set;
 * - completions stream chunks: model_dump_json(exclude_unset=False), so `"usage":null` on every chunk;
 * - the final usage chunk of both: exclude_none=True, so no prompt_tokens_details;
 * - non-stream bodies: model_dump(), so `prompt_tokens_details:null` in usage and, for chat, every
 *   field of vLLM 0.11's ChatCompletionResponse (api-surfaces.md §3.2).
 * Stream builders return whole SSE events (`data: …\n\n`).
 */

/** Identity of one response, shared by all its chunks. */
export interface ResponseHead {
  endpoint: "chat" | "completion";
  id: string;
  created: number;
  model: string;
}

/** The `data: {"id":…,"object":…,"created":…,"model":…` prefix every chunk of a response starts with. */
export function chunkPrefix(head: ResponseHead): string {
  const object = head.endpoint === "chat" ? "chat.completion.chunk" : "text_completion";
  return `data: {"id":${JSON.stringify(head.id)},"object":"${object}","created":${head.created},"model":${JSON.stringify(head.model)}`;
}

/** Usage as it appears in a chat chunk with continuous_usage_stats (only the three set fields). */
function chatUsage(prompt: number, completion: number): string {
  return `{"prompt_tokens":${prompt},"total_tokens":${prompt + completion},"completion_tokens":${completion}}`;
}

/**
 * The first chat chunk of a choice: role and empty content. vLLM >= 0.10.2 passes
 * `prompt_token_ids` (null without return_token_ids), so it is set and serialised.
 */
export function chatRoleChunk(prefix: string, index: number, promptTokens: number | null): string {
  const usage = promptTokens === null ? "" : `,"usage":${chatUsage(promptTokens, 0)}`;
  return `${prefix},"choices":[{"index":${index},"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${usage},"prompt_token_ids":null}\n\n`;
}

/** Usage numbers carried on a chunk when continuous_usage_stats is on. */
export interface ChunkUsage {
  prompt: number;
  completion: number;
}

/**
 * The `delta` of a generated token (DeltaMessage, exclude_unset), or null when the parser holds
 * the token back. `cut` is how many characters a stop string removed from the token's end.
 */
export function deltaJson(delta: TokenDelta, text: string, cut: number): string | null {
  switch (delta.kind) {
    case "content":
      return `{"content":${JSON.stringify(text)}}`;
    case "reasoning":
      return `{"reasoning_content":${JSON.stringify(text)}}`;
    case "hidden":
      return null;
    case "tool": {
      const args = delta.args === null ? null : delta.args.slice(0, Math.max(0, delta.args.length - cut));
      const fn = [delta.start ? `"name":${JSON.stringify(delta.start.name)}` : "", args === null ? "" : `"arguments":${JSON.stringify(args)}`];
      const head = delta.start ? `"id":${JSON.stringify(delta.start.id)},"type":"function",` : "";
      return `{"tool_calls":[{${head}"index":${delta.index},"function":{${fn.filter(Boolean).join(",")}}}]}`;
    }
  }
}

/**
 * One chat chunk after the role chunk. The last one of a choice also carries finish_reason and
 * stop_reason; every one carries `token_ids` (passed as null since vLLM 0.10.2).
 */
export function chatChunk(
  prefix: string,
  index: number,
  delta: string,
  logprobs: string | null,
  finish: string | null,
  stopReason: string | null,
  usage: ChunkUsage | null,
): string {
  const tail = finish === null ? `"finish_reason":null` : `"finish_reason":"${finish}","stop_reason":${JSON.stringify(stopReason)}`;
  const u = usage === null ? "" : `,"usage":${chatUsage(usage.prompt, usage.completion)}`;
  return `${prefix},"choices":[{"index":${index},"delta":${delta},"logprobs":${logprobs ?? "null"},${tail},"token_ids":null}]${u}}\n\n`;
}

/** One generated token of a completion choice (every field present, usage null unless continuous). */
export function completionTokenChunk(
  prefix: string,
  index: number,
  text: string,
  logprobs: string | null,
  finish: string | null,
  stopReason: string | null,
  usage: ChunkUsage | null,
): string {
  const u =
    usage === null
      ? "null"
      : `{"prompt_tokens":${usage.prompt},"total_tokens":${usage.prompt + usage.completion},"completion_tokens":${usage.completion},"prompt_tokens_details":null}`;
  const f = finish === null ? "null" : `"${finish}"`;
  return `${prefix},"choices":[{"index":${index},"text":${JSON.stringify(text)},"logprobs":${logprobs ?? "null"},"finish_reason":${f},"stop_reason":${JSON.stringify(stopReason)}}],"usage":${u}}\n\n`;
}

/** The usage-only chunk sent after all choices finished, when include_usage is on. */
export function usageChunk(prefix: string, prompt: number, completion: number): string {
  return `${prefix},"choices":[],"usage":${chatUsage(prompt, completion)}}\n\n`;
}

/** The SSE terminator. */
export const DONE_EVENT = "data: [DONE]\n\n";

/** A finished completions choice. */
export interface FinishedChoice {
  index: number;
  text: string;
  /** Rendered `logprobs`, or null. */
  logprobs: string | null;
  finishReason: string;
  stopReason: string | null;
}

/** A finished chat choice. */
export interface FinishedChatChoice {
  index: number;
  message: ChoiceMessage;
  logprobs: string | null;
  stopReason: string | null;
}

function usageJson(prompt: number, completion: number): string {
  return `{"prompt_tokens":${prompt},"total_tokens":${prompt + completion},"completion_tokens":${completion},"prompt_tokens_details":null}`;
}

/**
 * Non-stream body of /v1/chat/completions: ChatCompletionResponse.model_dump() of vLLM 0.11,
 * every field present, nulls included (refusal, annotations, audio, function_call, token_ids,
 * service_tier, system_fingerprint, prompt_logprobs, prompt_token_ids, kv_transfer_params).
 */
export function chatBody(head: ResponseHead, choices: readonly FinishedChatChoice[], prompt: number, completion: number): string {
  const items = choices.map(({ index, message: m, logprobs, stopReason }) => {
    const toolCalls = m.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
    const message = JSON.stringify({
      role: "assistant",
      content: m.content,
      refusal: null,
      annotations: null,
      audio: null,
      function_call: null,
      tool_calls: toolCalls,
      reasoning_content: m.reasoning,
    });
    return `{"index":${index},"message":${message},"logprobs":${logprobs ?? "null"},"finish_reason":${JSON.stringify(m.finishReason)},"stop_reason":${JSON.stringify(stopReason)},"token_ids":null}`;
  });
  return (
    `{"id":${JSON.stringify(head.id)},"object":"chat.completion","created":${head.created},"model":${JSON.stringify(head.model)},` +
    `"choices":[${items.join(",")}],"service_tier":null,"system_fingerprint":null,"usage":${usageJson(prompt, completion)},` +
    `"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`
  );
}

/** Non-stream body of /v1/completions. */
export function completionBody(head: ResponseHead, choices: readonly FinishedChoice[], prompt: number, completion: number): string {
  const items = choices.map(
    (c) =>
      `{"index":${c.index},"text":${JSON.stringify(c.text)},"logprobs":${c.logprobs ?? "null"},"finish_reason":${JSON.stringify(c.finishReason)},` +
      `"stop_reason":${JSON.stringify(c.stopReason)},"prompt_logprobs":null}`,
  );
  return `{"id":${JSON.stringify(head.id)},"object":"text_completion","created":${head.created},"model":${JSON.stringify(head.model)},"choices":[${items.join(",")}],"usage":${usageJson(prompt, completion)}}`;
}
