/**
 * vLLM's Anthropic Messages wire (vllm/entrypoints/anthropic/serving.py and api_router.py), byte
 * for byte. vLLM serves a Messages request as a chat completion and converts the result:
 * - the non-stream body is model_dump(exclude_none=True), so no null keys (no stop_sequence);
 * - stream events are model_dump_json(exclude_unset=True) in pydantic's declaration order
 *   (`content_block` before `index`), each framed as `event: <type>\ndata: <json>\n\n`
 *   (wrap_data_with_event), with no `ping` and no `[DONE]`;
 * - `message_start.message` carries `type` and `role` (the spec-correct form, vLLM PR #45376);
 * - `message_delta.delta` has only `stop_reason` (vLLM issue #55324).
 */

/** finish_reason → stop_reason (`stop_reason_map`); a matched stop sequence is a "stop", so "end_turn". */
const STOP_REASONS: Record<string, string> = { stop: "end_turn", length: "max_tokens", tool_calls: "tool_use" };

/** The chat completion fields the converter reads. */
export interface ChatCompletion {
  id: string;
  model: string;
  choices: { message: { content: string | null }; finish_reason: string | null }[];
  usage: { prompt_tokens: number; completion_tokens: number };
}

/** AnthropicErrorResponse, as `translate_error_response` writes it (status = the error's code). */
export function errorBody(type: string, message: string): string {
  return JSON.stringify({ type: "error", error: { type, message } });
}

/** AnthropicCountTokensResponse. */
export function countTokensBody(tokens: number): string {
  return JSON.stringify({ input_tokens: tokens, context_management: { original_input_tokens: tokens } });
}

/** `messages_full_converter`: text only when there is some, stop_reason only when mapped. */
export function messagesBody(chat: ChatCompletion): string {
  const choice = chat.choices[0];
  const text = choice?.message.content ?? "";
  const stopReason = STOP_REASONS[choice?.finish_reason ?? ""];
  return JSON.stringify({
    id: chat.id,
    type: "message",
    role: "assistant",
    content: text ? [{ type: "text", text }] : [],
    model: chat.model,
    ...(stopReason === undefined ? {} : { stop_reason: stopReason }),
    usage: { input_tokens: chat.usage.prompt_tokens, output_tokens: chat.usage.completion_tokens },
  });
}

function sse(type: string, data: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** One chat stream chunk, as the chat route writes it (only the fields the converter reads). */
interface ChatChunk {
  id?: string;
  model?: string;
  choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number };
  error?: { message?: string };
}

/** Turns the chat route's SSE output into Messages events. */
export interface StreamConverter {
  /** Converts whole `data: …\n\n` events; returns the Messages events to send. */
  push(chatEvents: string): string;
  /** True once the stream must end: after `message_stop`, or after an error event. */
  readonly ended: boolean;
}

/**
 * `message_stream_converter` for text output: the first chunk opens the message (its continuous
 * usage gives input_tokens), non-empty content opens text block 0 and becomes text_delta events,
 * the usage-only chunk closes the block and sends message_delta with the final counts, and
 * `[DONE]` becomes message_stop. A chunk that is not a chat chunk (the in-band error) ends the
 * stream with `event: error` and type "internal_error", as vLLM's converter does when it fails.
 */
export function createStreamConverter(): StreamConverter {
  let started = false;
  let ended = false;
  let finish: string | null = null;
  let index = 0;
  let open = false;

  function closeBlock(): string {
    if (!open) return "";
    open = false;
    return sse("content_block_stop", { type: "content_block_stop", index: index++ });
  }

  function convert(data: string): string {
    if (data === "[DONE]") {
      ended = true;
      return sse("message_stop", { type: "message_stop" });
    }
    const chunk = JSON.parse(data) as ChatChunk;
    if (chunk.error !== undefined || chunk.choices === undefined) {
      ended = true;
      const message = chunk.error?.message ?? "Invalid data format received";
      return sse("error", { type: "error", error: { type: "internal_error", message } });
    }
    if (!started) {
      started = true;
      const message = {
        id: chunk.id,
        type: "message",
        role: "assistant",
        content: [],
        model: chunk.model,
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: chunk.usage?.prompt_tokens ?? 0, output_tokens: 0 },
      };
      return sse("message_start", { type: "message_start", message });
    }
    const [choice] = chunk.choices;
    if (choice === undefined) {
      const stop_reason = STOP_REASONS[finish ?? "stop"];
      const usage = { input_tokens: chunk.usage?.prompt_tokens ?? 0, output_tokens: chunk.usage?.completion_tokens ?? 0 };
      return closeBlock() + sse("message_delta", { type: "message_delta", delta: { stop_reason }, usage });
    }
    if (choice.finish_reason) finish = choice.finish_reason;
    const text = choice.delta?.content;
    if (!text) return "";
    let out = "";
    if (!open) {
      open = true;
      out = sse("content_block_start", { type: "content_block_start", content_block: { type: "text", text: "" }, index });
    }
    return out + sse("content_block_delta", { type: "content_block_delta", delta: { type: "text_delta", text }, index });
  }

  return {
    push(chatEvents) {
      let out = "";
      for (const event of chatEvents.split("\n\n")) {
        if (ended) break;
        if (event.startsWith("data:")) out += convert(event.slice(5).trim());
      }
      return out;
    },
    get ended() {
      return ended;
    },
  };
}
