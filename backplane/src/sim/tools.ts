import { randomUUID } from "node:crypto";
import type { ToolMode, ToolSpec } from "./answer.ts";
import { badRequest } from "./errors.ts";
import { jsonForSchema, pyJson } from "./json-gen.ts";
import type { PlannedToken, StructuredBody, TokenDelta } from "./output.ts";
import { splitTokens } from "./tokenizer.ts";

/**
 * Tool calls as the simulated model writes them and as vLLM's serving code turns them into
 * `tool_calls` (serving_chat.py, tool_parsers/hermes_tool_parser.py). The generated text, whose
 * tokens are the completion tokens, is:
 * - auto (hermes): `<tool_call>\n{"name": "NAME", "arguments": ARGS}\n</tool_call>` per call,
 *   joined by "\n";
 * - named tool_choice: ARGS alone (the guided JSON of the tool's parameters);
 * - "required": `[{"name": "NAME", "parameters": ARGS}, …]` (the guided JSON array).
 * ARGS is json-gen.ts's JSON for the tool's parameters schema.
 */

/** A finished tool call. */
export interface ToolCallOut {
  id: string;
  name: string;
  arguments: string;
}

/** chat_utils.py make_tool_call_id (random): "chatcmpl-tool-" and a uuid4 as hex. */
export function toolCallId(): string {
  return `chatcmpl-tool-${randomUUID().replaceAll("-", "")}`;
}

const START = "<tool_call>";

/** The hermes text of calls given as name and ARGS (what an auto tool-call answer generates). */
export function hermesText(calls: readonly { name: string; arguments: string }[]): string {
  return calls.map((c) => `${START}\n{"name": ${JSON.stringify(c.name)}, "arguments": ${c.arguments}}\n</tool_call>`).join("\n");
}

/** Where one call sits in the generated text. */
interface Span {
  id: string;
  name: string;
  /** Offset of the quote closing the name (hermes streams the name once it is complete). */
  nameClose: number;
  argsStart: number;
  argsEnd: number;
  /** Offset of the first argument value: hermes holds the arguments back until it starts. */
  release: number;
}

/** Offset in ARGS where the first top-level value starts (its last character when there is none). */
function firstValueAt(args: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < args.length; i++) {
    const c = args[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === ":" && depth === 1) {
      let j = i + 1;
      while (args[j] === " ") j++;
      return j;
    }
  }
  return args.length - 1;
}

function layout(mode: ToolMode, calls: { name: string; args: string }[]): { text: string; spans: Span[] } {
  let text = mode === "required" ? "[" : "";
  const spans: Span[] = [];
  calls.forEach(({ name, args }, k) => {
    if (k > 0) text += mode === "required" ? ", " : "\n";
    const nameJson = JSON.stringify(name);
    const opening = mode === "auto" ? `${START}\n{"name": ` : mode === "required" ? `{"name": ` : "";
    const head = mode === "auto" ? `${opening}${nameJson}, "arguments": ` : mode === "required" ? `${opening}${nameJson}, "parameters": ` : "";
    const nameClose = text.length + opening.length + nameJson.length - 1;
    const argsStart = text.length + head.length;
    text += head + args + (mode === "auto" ? "}\n</tool_call>" : mode === "required" ? "}" : "");
    spans.push({ id: toolCallId(), name, nameClose, argsStart, argsEnd: argsStart + args.length, release: argsStart + firstValueAt(args) });
  });
  if (mode === "required") text += "]";
  return { text, spans };
}

/**
 * The stream deltas, token by token, as vLLM's code path for each mode emits them:
 * - auto (hermes parser): nothing for the markup; the name (id, type, index, function.name, no
 *   arguments) on the token that closes it; the arguments held until the first value begins,
 *   then one fragment per token; nothing after the arguments;
 * - named: every token is an arguments fragment, the first one also carrying id, type and name,
 *   and `index` is the choice's index (vLLM's quirk);
 * - required (`extract_tool_call_required_streaming`): id, type, name and "{" once a call's
 *   parameters open, then one fragment per token inside them; nothing for the array's markup.
 */
function deltas(mode: ToolMode, text: string, spans: Span[], choiceIndex: number): PlannedToken[] {
  const tokens: PlannedToken[] = [];
  const opened = new Set<number>();
  let held = "";
  let s = 0;
  for (const piece of splitTokens(text)) {
    const e = s + piece.length;
    let delta: TokenDelta = { kind: "hidden" };
    for (const [k, span] of spans.entries()) {
      const index = mode === "named" ? choiceIndex : k;
      const start = { id: span.id, name: span.name };
      if (mode === "auto" && s <= span.nameClose && span.nameClose < e) {
        delta = { kind: "tool", index, start, args: null };
        break;
      }
      const from = Math.max(s, span.argsStart);
      const to = Math.min(e, span.argsEnd);
      if (from >= to) continue;
      const part = text.slice(from, to);
      const seen = opened.has(k);
      if (mode !== "auto") {
        opened.add(k);
        delta = { kind: "tool", index, start: seen ? null : start, args: part };
      } else {
        held += part;
        if (seen || e > span.release) {
          opened.add(k);
          delta = { kind: "tool", index, start: null, args: held };
          held = "";
        }
      }
      break;
    }
    tokens.push({ text: piece, delta });
    s = e;
  }
  return tokens;
}

/** hermes_tool_parser.py extract_tool_calls: the calls, or null when it finds none or cannot parse them. */
function parseHermes(content: string): { before: string; calls: ToolCallOut[] } | null {
  if (!content.includes(START)) return null;
  try {
    const calls = [...content.matchAll(/<tool_call>(.*?)<\/tool_call>|<tool_call>(.*)/gs)].map((m) => {
      const call = JSON.parse(m[1] ? m[1] : (m[2] ?? "")) as Record<string, unknown>;
      if (typeof call.name !== "string" || !("arguments" in call)) throw new Error("not a tool call");
      return { id: toolCallId(), name: call.name, arguments: pyJson(call.arguments) };
    });
    return { before: content.slice(0, content.indexOf(START)), calls };
  } catch {
    return null;
  }
}

/** Python's repr of a str, as pydantic prints input_value. */
function pyRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  return `${quote}${text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replaceAll(quote, `\\${quote}`)}${quote}`;
}

/** What jiter says about JSON that ends too early. */
function eofWhileParsing(text: string): string {
  const stack: string[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") stack.push(c);
    else if (c === "]" || c === "}") stack.pop();
  }
  const last = text.trimEnd().at(-1);
  if (inString) return "a string";
  if (last === "," || last === ":" || stack.length === 0) return "a value";
  return stack.at(-1) === "[" ? "a list" : "an object";
}

/**
 * serving_chat.py, "required": `TypeAdapter(list[FunctionDefinition]).validate_json(content)`; a
 * cut array fails validation, which vLLM answers with a 400 carrying pydantic's message.
 */
function parseRequired(content: string): ToolCallOut[] {
  let items: unknown;
  try {
    items = JSON.parse(content);
  } catch {
    const repr = pyRepr(content);
    const shown = repr.length > 50 ? `${repr.slice(0, 25)}...${repr.slice(-24)}` : repr;
    throw badRequest(
      `1 validation error for list[FunctionDefinition]\n  Invalid JSON: EOF while parsing ${eofWhileParsing(content)} at line 1 column ${content.length} ` +
        `[type=json_invalid, input_value=${shown}, input_type=str]\n    For further information visit https://errors.pydantic.dev/2.11/v/json_invalid`,
    );
  }
  const list = Array.isArray(items) ? (items as Record<string, unknown>[]) : [];
  return list.map((item) => ({ id: toolCallId(), name: String(item.name), arguments: pyJson(item.parameters ?? null) }));
}

/** The answer of a tool-call choice: its tokens, and how vLLM reads the finished text. */
export function toolCallBody(mode: ToolMode, tools: readonly ToolSpec[], random: () => number, choiceIndex: number): StructuredBody {
  const calls = tools.map((tool) => ({ name: tool.name, args: jsonForSchema(tool.parameters, random) }));
  const { text, spans } = layout(mode, calls);
  // The EOS token's chunk: hermes passes "" through as content; the named branch always wraps the
  // delta text in a tool call; "required" has nothing to add (an empty delta).
  const eosDelta =
    mode === "auto" ? `{"content":""}` : mode === "named" ? `{"tool_calls":[{"index":${choiceIndex},"function":{"arguments":""}}]}` : "{}";
  return {
    tokens: deltas(mode, text, spans, choiceIndex),
    eosDelta,
    tool: true,
    message(content) {
      if (mode === "named") return { content: "", toolCalls: [{ id: toolCallId(), name: tools[0]?.name ?? "", arguments: content ?? "" }], toolsCalled: false };
      if (mode === "required") return { content: "", toolCalls: parseRequired(content ?? ""), toolsCalled: false };
      const parsed = content === null ? null : parseHermes(content);
      if (parsed === null) return { content, toolCalls: [], toolsCalled: false };
      return { content: parsed.before || null, toolCalls: parsed.calls, toolsCalled: true };
    },
  };
}
