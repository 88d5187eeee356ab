/**
 * vLLM's response bodies, byte for byte. Field order is pydantic's declaration order
 * (protocol.py); which fields appear follows how serving_chat.py / serving_completion.py
 * serialise each message:
 * - chat stream chunks: model_dump_json(exclude_unset=True), so only the fields vLLM set;
 * - completions stream chunks: model_dump_json(exclude_unset=False), so `"usage":null` on every chunk;
 * - the final usage chunk of both: exclude_none=True, so no prompt_tokens_details;
 * - non-stream bodies: model_dump(), so `prompt_tokens_details:null` in usage.
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

/** The first chat chunk of a choice: role and empty content. */
export function chatRoleChunk(prefix: string, index: number, promptTokens: number | null): string {
  const usage = promptTokens === null ? "" : `,"usage":${chatUsage(promptTokens, 0)}`;
  return `${prefix},"choices":[{"index":${index},"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${usage}}\n\n`;
}

/** Usage numbers carried on a chunk when continuous_usage_stats is on. */
export interface ChunkUsage {
  prompt: number;
  completion: number;
}

/** One generated token of a chat choice; the last one also carries finish_reason and stop_reason. */
export function chatTokenChunk(
  prefix: string,
  index: number,
  text: string,
  finish: string | null,
  stopReason: string | null,
  usage: ChunkUsage | null,
): string {
  const tail = finish === null ? `"finish_reason":null` : `"finish_reason":"${finish}","stop_reason":${JSON.stringify(stopReason)}`;
  const u = usage === null ? "" : `,"usage":${chatUsage(usage.prompt, usage.completion)}`;
  return `${prefix},"choices":[{"index":${index},"delta":{"content":${JSON.stringify(text)}},"logprobs":null,${tail}}]${u}}\n\n`;
}

/** One generated token of a completion choice (every field present, usage null unless continuous). */
export function completionTokenChunk(
  prefix: string,
  index: number,
  text: string,
  finish: string | null,
  stopReason: string | null,
  usage: ChunkUsage | null,
): string {
  const u =
    usage === null
      ? "null"
      : `{"prompt_tokens":${usage.prompt},"total_tokens":${usage.prompt + usage.completion},"completion_tokens":${usage.completion},"prompt_tokens_details":null}`;
  const f = finish === null ? "null" : `"${finish}"`;
  return `${prefix},"choices":[{"index":${index},"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":${f},"stop_reason":${JSON.stringify(stopReason)}}],"usage":${u}}\n\n`;
}

/** The usage-only chunk sent after all choices finished, when include_usage is on. */
export function usageChunk(prefix: string, prompt: number, completion: number): string {
  return `${prefix},"choices":[],"usage":${chatUsage(prompt, completion)}}\n\n`;
}

/** The SSE terminator. */
export const DONE_EVENT = "data: [DONE]\n\n";

/** A finished choice, for non-stream bodies. */
export interface FinishedChoice {
  index: number;
  text: string;
  finishReason: string;
  stopReason: string | null;
}

/** Non-stream body of /v1/chat/completions or /v1/completions. */
export function completionBody(head: ResponseHead, choices: readonly FinishedChoice[], prompt: number, completion: number): string {
  const usage = { prompt_tokens: prompt, total_tokens: prompt + completion, completion_tokens: completion, prompt_tokens_details: null };
  if (head.endpoint === "chat") {
    return JSON.stringify({
      id: head.id,
      object: "chat.completion",
      created: head.created,
      model: head.model,
      choices: choices.map((c) => ({
        index: c.index,
        message: { role: "assistant", content: c.text, tool_calls: [], reasoning_content: null },
        logprobs: null,
        finish_reason: c.finishReason,
        stop_reason: c.stopReason,
      })),
      usage,
    });
  }
  return JSON.stringify({
    id: head.id,
    object: "text_completion",
    created: head.created,
    model: head.model,
    choices: choices.map((c) => ({
      index: c.index,
      text: c.text,
      logprobs: null,
      finish_reason: c.finishReason,
      stop_reason: c.stopReason,
      prompt_logprobs: null,
    })),
    usage,
  });
}
