import { z } from "zod";
import { badRequest, validationError } from "./errors.ts";
import type { ResponseObject } from "./responses-wire.ts";
import { type ChatBody, modelValidatorError, truthy, validateBody } from "./schemas.ts";

/**
 * The body of POST /v1/responses as vLLM's ResponsesRequest accepts it (protocol.py), and its
 * conversion into the chat messages vLLM renders the prompt from (responses/utils.py
 * `construct_input_messages`, the newer form: old system messages are not carried over).
 * Unknown fields are dropped (`include_obfuscation`, `prompt_cache_key`, `conversation`, …).
 */

const int = z.number().int();
const dict = z.looseObject({});

/** A content part: input_text / input_image / input_file, or output_text / refusal of an earlier turn. */
const part = z.looseObject({ type: z.string(), text: z.string().nullish() });

/** One input item: a message (easy or typed), or a function_call / function_call_output / reasoning item. */
const item = z.looseObject({
  type: z.string().nullish(),
  role: z.enum(["user", "assistant", "system", "developer"]).nullish(),
  content: z.union([z.string(), z.array(part)]).nullish(),
  call_id: z.string().nullish(),
  name: z.string().nullish(),
  arguments: z.string().nullish(),
  output: z.union([z.string(), z.array(part)]).nullish(),
  summary: z.array(part).nullish(),
  encrypted_content: z.string().nullish(),
});
type Item = z.infer<typeof item>;

/** Tools are validated (a function tool needs a name) and echoed; the simulator never calls one. */
const tool = z.looseObject({ type: z.string(), name: z.string().nullish() }).refine((t) => t.type !== "function" || typeof t.name === "string", {
  message: "Value error, a function tool needs a name",
});

export const responsesSchema = z.object({
  model: z.string().nullish(),
  input: z.union([z.string(), z.array(item)]),
  instructions: z.string().nullish(),
  max_output_tokens: int.nullish(),
  max_tool_calls: int.nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  top_logprobs: int.nullish(),
  include: z.array(z.string()).nullish(),
  stream: z.boolean().nullish(),
  store: z.boolean().nullish(),
  background: z.boolean().nullish(),
  previous_response_id: z.string().nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: z.union([z.enum(["none", "auto", "required"]), dict]).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  text: dict.nullish(),
  reasoning: dict.nullish(),
  truncation: z.enum(["auto", "disabled"]).nullish(),
  service_tier: z.enum(["auto", "default", "flex", "scale", "priority"]).nullish(),
  user: z.string().nullish(),
  // vLLM extra: becomes the response id.
  request_id: z.string().nullish(),
  sim_fault: z.enum(["error_mid_stream", "drop_mid_stream", "engine_error"]).nullish(),
  sim_fault_after: int.min(0).nullish(),
  sim_ttft_ms: z.number().min(0).nullish(),
});

export type ResponsesBody = z.infer<typeof responsesSchema>;

/** ResponsesRequest's "before" model validators, then the field validation. */
export function parseResponsesRequest(raw: unknown): ResponsesBody {
  if (raw !== null && typeof raw === "object" && !Array.isArray(raw)) {
    const data = raw as Record<string, unknown>;
    // validate_background: `data.get("store", True)`, so only an explicit falsy store fails.
    if (truthy(data.background) && "store" in data && !truthy(data.store)) throw modelValidatorError("background can only be used when `store` is true");
    // validate_prompt
    if (data.prompt !== undefined && data.prompt !== null) throw modelValidatorError("prompt template is not supported");
  }
  return validateBody(responsesSchema, raw);
}

interface ToolCall {
  id: string;
  function: { name: string; arguments: string };
  type: "function";
}

/** A chat message as vLLM's converter builds it; the simulated template reads content and tool_calls. */
export interface ChatMessage {
  role: string;
  content?: string | unknown[] | null;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  reasoning?: string;
}

function missing(index: number, field: string): never {
  throw validationError([{ type: "missing", loc: ["body", "input", index, field], msg: "Field required" }]);
}

function firstText(parts: string | { text?: string | null }[] | null | undefined): string {
  if (typeof parts === "string") return parts;
  return parts?.[0]?.text ?? "";
}

/**
 * `_construct_message_from_response_item`: one input item as a chat message. A function call,
 * reasoning or assistant text right after an assistant message is folded into it (when that
 * message does not have one yet), as vLLM does to rebuild one assistant turn from several items.
 */
function convertItem(entry: Item, index: number, out: ChatMessage[]): void {
  const last = out.at(-1);
  const prev = last?.role === "assistant" ? last : undefined;
  switch (entry.type) {
    case "function_call": {
      const call: ToolCall = {
        id: entry.call_id ?? missing(index, "call_id"),
        function: { name: entry.name ?? missing(index, "name"), arguments: entry.arguments ?? missing(index, "arguments") },
        type: "function",
      };
      if (prev) (prev.tool_calls ??= []).push(call);
      else out.push({ role: "assistant", tool_calls: [call] });
      return;
    }
    case "function_call_output":
      out.push({ role: "tool", content: entry.output ?? missing(index, "output"), tool_call_id: entry.call_id ?? missing(index, "call_id") });
      return;
    case "reasoning": {
      if (entry.encrypted_content) throw badRequest("Encrypted content is not supported.");
      const reasoning = entry.content?.length ? firstText(entry.content) : firstText(entry.summary);
      if (prev && prev.reasoning === undefined) prev.reasoning = reasoning;
      else out.push({ role: "assistant", reasoning });
      return;
    }
    case "message":
    case null:
    case undefined:
      break;
    default:
      throw badRequest(`Input items of type '${entry.type}' are not supported by the simulated engine.`);
  }
  const role = entry.role ?? missing(index, "role");
  if (role === "assistant") {
    // Only the first content part of an assistant message is kept, as in vLLM.
    const text = firstText(entry.content);
    if (prev && prev.content === undefined) prev.content = text;
    else out.push({ role, content: text });
    return;
  }
  const content = entry.content ?? missing(index, "content");
  out.push({ role, content: typeof content === "string" ? content : content.map(chatPart) });
}

/**
 * vLLM's chat parser reads `input_text` as text and `input_image` as an image (its `image_url`
 * string); they become the chat parts the simulated template counts. Other parts pass as sent.
 */
function chatPart(p: z.infer<typeof part>): unknown {
  if (p.type === "input_text") return { type: "text", text: p.text ?? "" };
  if (p.type === "input_image" && typeof p.image_url === "string") return { type: "image_url", image_url: { url: p.image_url } };
  return p;
}

/** What a stored earlier response contributes to the next turn. */
export interface PreviousTurn {
  messages: readonly ChatMessage[];
  response: ResponseObject;
}

/**
 * The chat messages of a Responses request: `instructions` as the system message, then the
 * earlier turn (its stored messages without their system message, and each text part of its
 * output as an assistant message), then the input (a string is one user message).
 */
export function toChatMessages(body: ResponsesBody, previous: PreviousTurn | null): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (body.instructions) out.push({ role: "system", content: body.instructions });
  if (previous) {
    for (const message of previous.messages) if (message.role !== "system") out.push(message);
    for (const output of previous.response.output) for (const part of output.content) out.push({ role: "assistant", content: part.text });
  }
  if (typeof body.input === "string") {
    out.push({ role: "user", content: body.input });
    return out;
  }
  const turn: ChatMessage[] = [];
  body.input.forEach((entry, index) => convertItem(entry, index, turn));
  out.push(...turn);
  return out;
}

/**
 * The chat request the engine runs: always streamed with a usage chunk, which the converter
 * turns into Responses events (or, for `stream: false`, only into the final object). `tools`
 * are not passed on: the simulator answers in text (docs/simulator.md).
 */
export function toChatBody(body: ResponsesBody, model: string, messages: ChatMessage[], maxTokens: number, requestId: string): ChatBody {
  return {
    model,
    messages,
    max_tokens: maxTokens,
    temperature: body.temperature ?? null,
    top_p: body.top_p ?? null,
    request_id: requestId,
    stream: true,
    stream_options: { include_usage: true },
    sim_fault: body.sim_fault ?? null,
    sim_fault_after: body.sim_fault_after ?? null,
    sim_ttft_ms: body.sim_ttft_ms ?? null,
  };
}
