import { badRequest } from "./errors.ts";
import { modelValidatorError, truthy } from "./schemas.ts";
import { contentText, type SimChatMessage } from "./tokenizer.ts";

/**
 * What a chat answer looks like, decided once per request: plain text, JSON (response_format),
 * or tool calls. The simulator plays a vLLM started with `--enable-auto-tool-choice
 * --tool-call-parser hermes`, and decides like this (docs/simulator.md):
 * - tool_choice {type:"function",function:{name}}: that tool, always (vLLM guides the output
 *   with the tool's parameters schema);
 * - "required": the tools the last message names, else the first tool (a guided JSON array);
 * - "auto" (explicit, or implied by `tools`): when the conversation ends with a user message that
 *   names tools (a function name as a whole word, any case), it calls them, in the order of
 *   `tools`; otherwise, and after a tool result, it answers in text;
 * - parallel_tool_calls:false keeps one call; "none" never calls.
 * A guided response_format wins over "auto" (the grammar leaves no room for <tool_call>), and a
 * named or required tool choice wins over response_format, as in vLLM.
 */

/** A function tool as the request declares it. */
export interface ToolSpec {
  name: string;
  /** The JSON schema of the arguments (absent: no arguments). */
  parameters: unknown;
}

/** How the tool calls are produced and parsed. */
export type ToolMode = "auto" | "named" | "required";

/** The shape of every choice's answer. */
export type AnswerSpec =
  | { kind: "text" }
  /** schema null: response_format json_object. */
  | { kind: "json"; schema: unknown }
  | { kind: "tools"; mode: ToolMode; tools: ToolSpec[] };

/** The request fields the decision reads (validated). */
export interface AnswerFields {
  messages: readonly SimChatMessage[];
  tools?: { function: { name: string; parameters?: unknown } }[] | null;
  tool_choice?: "none" | "auto" | "required" | { function: { name: string } } | null;
  parallel_tool_calls?: boolean | null;
  response_format?: { type: string; json_schema?: { schema?: unknown } | null } | null;
}

const JSON_OBJECT = { kind: "json", schema: null } as const;

function record(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/**
 * protocol.py check_tool_usage, a "before" validator on the raw body: with `tools` and no
 * `tool_choice` the choice is "auto"; "required" with an empty list becomes "none"; a named choice
 * must name a declared tool. Returns the effective tool_choice.
 */
export function checkToolUsage(raw: Record<string, unknown>): unknown {
  const tools = raw.tools;
  const choice = "tool_choice" in raw ? raw.tool_choice : truthy(tools) ? "auto" : "none";
  if (choice === "none" || choice === null || choice === undefined) return choice ?? "none";
  if (tools === undefined || tools === null) throw modelValidatorError("When using `tool_choice`, `tools` must be set.");
  const named = record(choice);
  if (choice !== "auto" && choice !== "required" && !named) {
    throw modelValidatorError(
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a primitive or an array here: objects were excluded above
      `Invalid value for \`tool_choice\`: ${String(choice)}! Only named tools, "none", "auto" or "required" are supported.`,
    );
  }
  if (choice === "required" && Array.isArray(tools) && tools.length === 0) return "none";
  if (!named) return choice;
  const usage = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`';
  const fn = record(named.function);
  if (!fn) throw modelValidatorError(`Invalid value for \`function\`: \`${pyValue(named.function)}\` in \`tool_choice\`! ${usage}`);
  if (!("name" in fn)) throw modelValidatorError(`Expected field \`name\` in \`function\` in \`tool_choice\`! ${usage}`);
  if (typeof fn.name !== "string" || fn.name === "") throw modelValidatorError(`Invalid \`name\` in \`function\`: \`${pyValue(fn.name)}\` in \`tool_choice\`! ${usage}`);
  const declared = Array.isArray(tools) ? tools.map((t) => record(record(t)?.function)?.name) : [];
  if (!declared.includes(fn.name)) throw modelValidatorError("The tool specified in `tool_choice` does not match any of the specified `tools`");
  return choice;
}

function pyValue(value: unknown): string {
  if (value === undefined || value === null) return "None";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** protocol.py check_logprobs (chat), a "before" validator. */
export function checkChatLogprobs(raw: Record<string, unknown>): void {
  const top = raw.top_logprobs;
  if (typeof top === "number") {
    if (top < 0) throw modelValidatorError("`top_logprobs` must be a positive value.");
    if (top > 0 && !truthy(raw.logprobs)) throw modelValidatorError("when using `top_logprobs`, `logprobs` must be set to true.");
  }
}

/** Largest top-k vLLM serves by default (`--max-logprobs 20`). */
export const MAX_LOGPROBS = 20;

/** processor.py `_validate_logprobs`: raised when the engine takes the request. */
export function logprobsLimitError(k: number): string | null {
  return k > MAX_LOGPROBS ? `Requested sample logprobs of ${k}, which is greater than max allowed: ${MAX_LOGPROBS}` : null;
}

/** True when `name` appears in `text` as a whole word, ignoring case. */
function mentions(text: string, name: string): boolean {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^A-Za-z0-9_])${escaped}($|[^A-Za-z0-9_])`, "i").test(text);
}

/** The tools the conversation's last message names, when that message is the user's. */
function namedInLastUserMessage(messages: readonly SimChatMessage[], tools: ToolSpec[]): ToolSpec[] {
  const last = messages.at(-1);
  if (last?.role !== "user") return [];
  const text = contentText(last.content);
  return tools.filter((tool) => mentions(text, tool.name));
}

/** Decides the answer's shape (see the rules above). `choice` is check_tool_usage's result. */
export function decideAnswer(body: AnswerFields, choice: unknown): AnswerSpec {
  const tools: ToolSpec[] = (body.tools ?? []).map((t) => ({ name: t.function.name, parameters: t.function.parameters ?? null }));
  const parallel = body.parallel_tool_calls !== false;
  const format = body.response_format;
  // A json_schema without a schema sets no guide in vLLM (guided_json None): plain text.
  const schema = format?.type === "json_schema" ? format.json_schema?.schema : undefined;
  const json: AnswerSpec | null = format?.type === "json_object" ? JSON_OBJECT : schema !== undefined && schema !== null ? { kind: "json", schema } : null;
  const named = record(choice);
  if (named) {
    const name = record(named.function)?.name;
    const tool = tools.find((t) => t.name === name);
    if (!tool) throw badRequest(`Tool '${String(name)}' has not been passed in \`tools\`.`);
    return { kind: "tools", mode: "named", tools: [tool] };
  }
  if (choice === "required" && tools.length > 0) {
    const picked = namedInLastUserMessage(body.messages, tools);
    const calls = picked.length > 0 ? picked : tools.slice(0, 1);
    return { kind: "tools", mode: "required", tools: parallel ? calls : calls.slice(0, 1) };
  }
  if (json) return json;
  if (choice === "auto") {
    const picked = namedInLastUserMessage(body.messages, tools);
    if (picked.length > 0) return { kind: "tools", mode: "auto", tools: parallel ? picked : picked.slice(0, 1) };
  }
  return { kind: "text" };
}
