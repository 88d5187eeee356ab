import { randomHex } from "./generate.ts";

/**
 * vLLM's Responses wire (vllm/entrypoints/openai/responses). The Response object has the field
 * set and order of vLLM's ResponsesResponse (v0.11+, `model_dump()`, nulls included). Stream
 * events follow the spec-correct form of the newer `simple_streaming_events.py`: each event is
 * `event: <type>\ndata: <json>\n\n` with `sequence_number` from 0, `content_index` is 0 for the
 * one text part, the streamed item id is a fresh bare uuid, `response.completed` carries the
 * same item, and there is no `[DONE]`. Keys inside events are in the order of the OpenAI spec.
 */

export type ResponseStatus = "queued" | "in_progress" | "completed" | "incomplete" | "cancelled" | "failed";

/** An output_text part. vLLM leaves `logprobs` None (null) in the non-stream object. */
export interface OutputText {
  type: "output_text";
  text: string;
  annotations: [];
  logprobs?: null | [];
}

/** The assistant message item, the only output item the simulator produces. */
export interface OutputMessage {
  id: string;
  type: "message";
  role: "assistant";
  status: "in_progress" | "completed";
  content: OutputText[];
}

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** What a response echoes of its request, fixed when it is created. */
export interface ResponseBase {
  id: string;
  created_at: number;
  instructions: string | null;
  metadata: Record<string, string> | null;
  model: string;
  parallel_tool_calls: boolean;
  temperature: number;
  tool_choice: unknown;
  tools: unknown[];
  top_p: number;
  background: boolean;
  /** The effective limit (the request's, clamped to the context left), never null. */
  max_output_tokens: number;
  max_tool_calls: number | null;
  previous_response_id: string | null;
  reasoning: unknown;
  service_tier: string;
  text: unknown;
  top_logprobs: number | null;
  truncation: string;
  user: string | null;
}

/** ResponsesResponse as vLLM dumps it. */
export interface ResponseObject {
  id: string;
  created_at: number;
  incomplete_details: { reason: "max_output_tokens" } | null;
  instructions: string | null;
  metadata: Record<string, string> | null;
  model: string;
  object: "response";
  output: OutputMessage[];
  parallel_tool_calls: boolean;
  temperature: number;
  tool_choice: unknown;
  tools: unknown[];
  top_p: number;
  background: boolean;
  max_output_tokens: number;
  max_tool_calls: number | null;
  previous_response_id: string | null;
  prompt: null;
  reasoning: unknown;
  service_tier: string;
  status: ResponseStatus;
  text: unknown;
  top_logprobs: number | null;
  truncation: string;
  usage: ResponseUsage | null;
  user: string | null;
  input_messages: null;
  output_messages: null;
}

/** ResponsesResponse.from_request: `incomplete_details` is set exactly when the status is incomplete. */
export function responseObject(base: ResponseBase, status: ResponseStatus, output: OutputMessage[], usage: ResponseUsage | null): ResponseObject {
  return {
    id: base.id,
    created_at: base.created_at,
    incomplete_details: status === "incomplete" ? { reason: "max_output_tokens" } : null,
    instructions: base.instructions,
    metadata: base.metadata,
    model: base.model,
    object: "response",
    output,
    parallel_tool_calls: base.parallel_tool_calls,
    temperature: base.temperature,
    tool_choice: base.tool_choice,
    tools: base.tools,
    top_p: base.top_p,
    background: base.background,
    max_output_tokens: base.max_output_tokens,
    max_tool_calls: base.max_tool_calls,
    previous_response_id: base.previous_response_id,
    prompt: null,
    reasoning: base.reasoning,
    service_tier: base.service_tier,
    status,
    text: base.text,
    top_logprobs: base.top_logprobs,
    truncation: base.truncation,
    usage,
    user: base.user,
    input_messages: null,
    output_messages: null,
  };
}

/** Usage without vLLM's per-turn arrays; cached_tokens is 0 (the chat route reports no cache hits). */
function usageOf(prompt: number, completion: number): ResponseUsage {
  return {
    input_tokens: prompt,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: completion,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: prompt + completion,
  };
}

/** vLLM's `create_error_response(err_type="invalid_request_error", …)`: the app's error shape. */
export function invalidRequestBody(message: string, code: number): string {
  return JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code } });
}

/** `_make_not_found_error`, for retrieve, cancel and previous_response_id. */
export function notFoundBody(id: string): string {
  return invalidRequestBody(`Response with id '${id}' not found.`, 404);
}

/** The error of a chat stream, as the chat route sends it in-band. */
export interface ChatError {
  message: string;
  type: string;
  code: number;
}

/** How a generation ended: the final object, or the engine's error. */
export type ConvertResult = { ok: true; response: ResponseObject } | { ok: false; error: ChatError };

/** Turns the chat route's SSE output into Responses events. */
export interface EventConverter {
  /** `response.created` and `response.in_progress`, sent before any token. */
  open(): string[];
  /** Converts chat SSE text (whole or partial events); returns the Responses events to send. */
  push(chatText: string): string[];
  /** Set once the chat stream has ended. */
  readonly result: ConvertResult | null;
}

/** One chat stream chunk (only the fields the converter reads). */
interface ChatChunk {
  choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number };
  error?: Partial<ChatError>;
}

/**
 * Builds Responses events from a chat stream: the first non-empty token opens the message item
 * and its text part, each token is an `output_text.delta`, the usage chunk gives the counts and
 * `[DONE]` closes the item and sends `response.completed` with the final object, whose status
 * is "incomplete" when the output limit was hit. An in-band chat error becomes an `error` event.
 * `stream: false` only changes the item id (`msg_<hex>`, as vLLM's non-stream object has it)
 * and keeps `logprobs: null` on the text part.
 */
export function createEventConverter(base: ResponseBase, stream: boolean): EventConverter {
  const itemId = stream ? randomHex() : `msg_${randomHex()}`;
  let sequence = 0;
  let buffer = "";
  let text = "";
  let opened = false;
  let finish: string | null = null;
  let usage: ResponseUsage = usageOf(0, 0);
  let result: ConvertResult | null = null;

  function event(type: string, fields: Record<string, unknown>): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...fields })}\n\n`;
  }

  function where(): Record<string, unknown> {
    return { item_id: itemId, output_index: 0, content_index: 0 };
  }

  function finalItem(): OutputMessage {
    const part: OutputText = stream ? { type: "output_text", text, annotations: [] } : { type: "output_text", text, annotations: [], logprobs: null };
    return { id: itemId, type: "message", role: "assistant", status: "completed", content: [part] };
  }

  function done(): string[] {
    const out: string[] = [];
    const item = opened ? finalItem() : null;
    if (item) {
      out.push(event("response.output_text.done", { ...where(), text, logprobs: [] }));
      out.push(event("response.content_part.done", { ...where(), part: { type: "output_text", text, annotations: [] } }));
      out.push(event("response.output_item.done", { output_index: 0, item }));
    }
    const response = responseObject(base, finish === "length" ? "incomplete" : "completed", item ? [item] : [], usage);
    result = { ok: true, response };
    out.push(event("response.completed", { response }));
    return out;
  }

  function convert(data: string): string[] {
    if (data === "[DONE]") return done();
    const chunk = JSON.parse(data) as ChatChunk;
    if (chunk.error !== undefined || chunk.choices === undefined) {
      const error = { message: chunk.error?.message ?? "Internal server error", type: chunk.error?.type ?? "InternalServerError", code: chunk.error?.code ?? 500 };
      result = { ok: false, error };
      // ResponseErrorEvent: flat (no `error` wrapper), `code` a string; the engine's error type here.
      const data = { type: "error", code: error.type, message: error.message, param: null, sequence_number: sequence++ };
      return [`event: error\ndata: ${JSON.stringify(data)}\n\n`];
    }
    const [choice] = chunk.choices;
    if (choice === undefined) {
      if (chunk.usage) usage = usageOf(chunk.usage.prompt_tokens, chunk.usage.completion_tokens);
      return [];
    }
    if (choice.finish_reason) finish = choice.finish_reason;
    const delta = choice.delta?.content;
    // vLLM filters empty deltas (the role chunk, EOS), so an answer with no text has no item.
    if (!delta) return [];
    const out: string[] = [];
    if (!opened) {
      opened = true;
      out.push(event("response.output_item.added", { output_index: 0, item: { id: itemId, type: "message", role: "assistant", status: "in_progress", content: [] } }));
      out.push(event("response.content_part.added", { ...where(), part: { type: "output_text", text: "", annotations: [], logprobs: [] } }));
    }
    text += delta;
    out.push(event("response.output_text.delta", { ...where(), delta, logprobs: [] }));
    return out;
  }

  return {
    open() {
      const response = responseObject(base, "in_progress", [], null);
      return [event("response.created", { response }), event("response.in_progress", { response })];
    },
    push(chatText) {
      buffer += chatText;
      const out: string[] = [];
      let end = buffer.indexOf("\n\n");
      while (end !== -1 && result === null) {
        const raw = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (raw.startsWith("data:")) out.push(...convert(raw.slice(5).trim()));
        end = buffer.indexOf("\n\n");
      }
      return out;
    },
    get result() {
      return result;
    },
  };
}
