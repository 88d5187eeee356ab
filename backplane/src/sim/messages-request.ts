import { z } from "zod";
import type { ChatBody } from "./schemas.ts";

/**
 * Bodies of POST /v1/messages and /v1/messages/count_tokens as vLLM's pydantic models accept them
 * (vllm/entrypoints/anthropic/protocol.py), and their conversion into the chat request vLLM
 * really serves them with (anthropic/serving.py `_convert_anthropic_to_openai_request`).
 * Unknown fields are dropped, as pydantic's default `extra="ignore"` does (`thinking`,
 * `output_config`, `cache_control`, …).
 */

const int = z.number().int();
const dict = z.looseObject({});

/** AnthropicContentBlock: one model for every block type, every field optional. */
const block = z.object({
  type: z.enum(["text", "image", "tool_use", "tool_result", "tool_reference", "thinking", "redacted_thinking"]),
  text: z.string().nullish(),
  source: dict.nullish(),
  id: z.string().nullish(),
  tool_use_id: z.string().nullish(),
  name: z.string().nullish(),
  input: dict.nullish(),
  content: z.union([z.string(), z.array(dict)]).nullish(),
  thinking: z.string().nullish(),
});
type Block = z.infer<typeof block>;

// AnthropicMessage.normalize_role: Claude Code >= 2.1.154 sends "ctx" and "msg" roles.
const ROLE_ALIASES: Record<string, string> = { ctx: "user", msg: "user" };

const message = z.object({
  role: z.preprocess((role) => (typeof role === "string" ? (ROLE_ALIASES[role] ?? role) : role), z.enum(["user", "assistant", "system"])),
  content: z.union([z.string(), z.array(block)]),
});

const common = {
  // Field validators, reported by pydantic as value errors.
  model: z.string().refine((model) => model !== "", { message: "Value error, Model is required" }),
  messages: z.array(message),
  system: z.union([z.string(), z.array(block)]).nullish(),
  tools: z.array(z.object({ name: z.string(), description: z.string().nullish(), input_schema: dict })).nullish(),
  tool_choice: z
    .object({ type: z.enum(["auto", "any", "tool", "none"]), name: z.string().nullish() })
    .refine((choice) => choice.type !== "tool" || Boolean(choice.name), {
      message: "Value error, tool_choice.name is required when type is 'tool'",
    })
    .nullish(),
};

/** AnthropicMessagesRequest, plus the simulator's fault knobs (see docs/simulator.md). */
export const messagesSchema = z.object({
  ...common,
  max_tokens: int.refine((max) => max > 0, { message: "Value error, max_tokens must be positive" }),
  metadata: dict.nullish(),
  stop_sequences: z.array(z.string()).nullish(),
  stream: z.boolean().nullish(),
  temperature: z.number().nullish(),
  top_k: int.nullish(),
  top_p: z.number().nullish(),
  sim_fault: z.enum(["error_mid_stream", "drop_mid_stream", "engine_error"]).nullish(),
  sim_fault_after: int.min(0).nullish(),
  sim_ttft_ms: z.number().min(0).nullish(),
});

/** AnthropicCountTokensRequest. */
export const countTokensSchema = z.object(common);

export type MessagesBody = z.infer<typeof messagesSchema>;
export type CountTokensBody = z.infer<typeof countTokensSchema>;

type ChatPart = { type: "text"; text: string } | { type: "image_url"; image_url: { url: string } } | { type: "tool_reference"; name: string };

interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** A chat message as vLLM's converter builds it; the simulated template reads content and tool_calls. */
export interface ConvertedMessage {
  role: string;
  content?: string | ChatPart[];
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  reasoning?: string;
}

/** Python's json.dumps (ensure_ascii, ", " and ": ") or repr() of a JSON value. */
function python(value: unknown, mode: "json" | "repr"): string {
  if (value === null || value === undefined) return mode === "json" ? "null" : "None";
  if (typeof value === "boolean") return mode === "json" ? String(value) : value ? "True" : "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") {
    if (mode === "json") return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
    return `${quote}${value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replaceAll(quote, `\\${quote}`)}${quote}`;
  }
  if (Array.isArray(value)) return `[${value.map((v) => python(v, mode)).join(", ")}]`;
  if (typeof value !== "object") return "";
  return `{${Object.entries(value).map(([k, v]) => `${python(k, mode)}: ${python(v, mode)}`).join(", ")}}`;
}

/** `_convert_image_source_to_url`: a URL source as is, anything else as a base64 data URI. */
function imageUrl(source: Record<string, unknown>): string {
  if (source.type === "url") return typeof source.url === "string" ? source.url : "";
  const media = typeof source.media_type === "string" ? source.media_type : "image/jpeg";
  return `data:${media};base64,${typeof source.data === "string" ? source.data : ""}`;
}

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

const BILLING_HEADER = "x-anthropic-billing-header";

/** Text of system content; Claude Code's per-request billing header block is dropped (it defeats prefix caching). */
function systemParts(content: string | Block[], out: string[]): void {
  if (typeof content === "string") {
    out.push(content);
    return;
  }
  for (const b of content) if (b.type === "text" && b.text && !b.text.startsWith(BILLING_HEADER)) out.push(b.text);
}

/** `_convert_user_tool_result`: a tool message, then images and tool references as further messages. */
function userToolResult(b: Block, out: ConvertedMessage[]): void {
  const id = b.tool_use_id || "";
  const texts: string[] = [];
  const images: ChatPart[] = [];
  const refs: ChatPart[] = [];
  for (const item of Array.isArray(b.content) ? b.content : []) {
    if (item.type === "text") texts.push(typeof item.text === "string" ? item.text : "");
    else if (item.type === "image") {
      const url = imageUrl(record(item.source));
      if (url) images.push({ type: "image_url", image_url: { url } });
    } else if (item.type === "tool_reference") {
      const name = item.tool_name || item.name;
      if (typeof name === "string" && name) refs.push({ type: "tool_reference", name });
    }
  }
  out.push({ role: "tool", tool_call_id: id, content: typeof b.content === "string" ? b.content : texts.join("\n") });
  if (images.length > 0) out.push({ role: "user", content: images });
  if (refs.length > 0) out.push({ role: "tool", tool_call_id: id, content: refs });
}

/** `_convert_message_content`: the blocks of one message; user tool results go to `out` first. */
function convertBlocks(role: string, blocks: Block[], out: ConvertedMessage[]): ConvertedMessage {
  const parts: ChatPart[] = [];
  const toolCalls: ToolCall[] = [];
  const reasoning: string[] = [];
  for (const b of blocks) {
    if (b.type === "text" && b.text) parts.push({ type: "text", text: b.text });
    else if (b.type === "image" && b.source && Object.keys(b.source).length > 0) parts.push({ type: "image_url", image_url: { url: imageUrl(b.source) } });
    else if (b.type === "thinking" && typeof b.thinking === "string") reasoning.push(b.thinking);
    else if (b.type === "tool_use") {
      const id = b.id || `call_${Math.floor(Date.now() / 1000)}`;
      toolCalls.push({ id, type: "function", function: { name: b.name || "", arguments: python(b.input ?? {}, "json") } });
    } else if (b.type === "tool_result") {
      if (role === "user") userToolResult(b, out);
      else if (typeof b.content === "string") parts.push({ type: "text", text: `Tool result: ${b.content}` });
      else parts.push({ type: "text", text: `Tool result: ${b.content?.length ? python(b.content, "repr") : ""}` });
    }
  }
  const converted: ConvertedMessage = { role };
  if (reasoning.length > 0) converted.reasoning = reasoning.join("");
  if (toolCalls.length > 0) converted.tool_calls = toolCalls;
  const [first] = parts;
  if (first) converted.content = parts.length === 1 && first.type === "text" ? first.text : parts;
  return converted;
}

/**
 * The chat messages vLLM renders for a Messages request: one system message first (the `system`
 * field and any `system` messages, concatenated with no separator), then each message in order.
 * A user message left without content (only tool results) is dropped; an assistant one is kept.
 */
export function toChatMessages(body: CountTokensBody): ConvertedMessage[] {
  const out: ConvertedMessage[] = [];
  const system: string[] = [];
  if (body.system) systemParts(body.system, system);
  for (const m of body.messages) if (m.role === "system") systemParts(m.content, system);
  if (system.length > 0) out.push({ role: "system", content: system.join("") });
  for (const m of body.messages) {
    if (m.role === "system") continue;
    if (typeof m.content === "string") {
      out.push({ role: m.role, content: m.content });
      continue;
    }
    const converted = convertBlocks(m.role, m.content, out);
    if (m.role !== "user" || converted.content !== undefined) out.push(converted);
  }
  return out;
}

/**
 * `_build_base_request` and `_handle_streaming_options`: the chat request a Messages request
 * becomes. `max_tokens` is sent as both limits; a stream asks for usage on every chunk, where
 * the converter finds the prompt size for `message_start`. `tools` and `tool_choice` are not
 * passed on: the simulator accepts them and never calls a tool (docs/simulator.md).
 */
export function toChatBody(body: MessagesBody): ChatBody {
  const chat: ChatBody = {
    model: body.model,
    messages: toChatMessages(body),
    max_tokens: body.max_tokens,
    max_completion_tokens: body.max_tokens,
    stop: body.stop_sequences ?? null,
    temperature: body.temperature ?? null,
    top_p: body.top_p ?? null,
    top_k: body.top_k ?? null,
    sim_fault: body.sim_fault ?? null,
    sim_fault_after: body.sim_fault_after ?? null,
    sim_ttft_ms: body.sim_ttft_ms ?? null,
  };
  if (body.stream) {
    chat.stream = true;
    chat.stream_options = { include_usage: true, continuous_usage_stats: true };
  }
  return chat;
}
