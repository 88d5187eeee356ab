import type { AnswerSpec } from "./answer.ts";
import { jsonForSchema, jsonObjectText } from "./json-gen.ts";
import { mulberry32, wordTokens } from "./textgen.ts";
import { splitTokens } from "./tokenizer.ts";
import { toolCallBody, type ToolCallOut } from "./tools.ts";

/**
 * What one choice generates, token by token, and how vLLM turns the finished text into a message.
 * A reasoning model first writes reasoning words, then DeepSeek-R1's `</think>` (one token), then
 * the answer; the answer is text words, guided JSON, or tool calls (answer.ts, tools.ts).
 */

/** What a generated token shows in a stream chunk's `delta`. */
export type TokenDelta =
  | { kind: "content" }
  | { kind: "reasoning" }
  /** Held back by a parser: no chunk (unless it is the choice's last token). */
  | { kind: "hidden" }
  /** A tool-call delta: `start` on a call's first delta, `args` the arguments fragment (null: none). */
  | { kind: "tool"; index: number; start: { id: string; name: string } | null; args: string | null };

/** One generated token: its text and its delta. */
export interface PlannedToken {
  text: string;
  delta: TokenDelta;
}

/** The message fields vLLM builds from a finished answer's content. */
export interface BodyMessage {
  content: string | null;
  toolCalls: ToolCallOut[];
  /** Auto tool parsing found calls: finish_reason becomes "tool_calls". */
  toolsCalled: boolean;
}

/** A guided answer (JSON or tool calls): a fixed text, then EOS. */
export interface StructuredBody {
  tokens: PlannedToken[];
  /** The `delta` of the EOS token's chunk. */
  eosDelta: string;
  /** A tool-call answer: a stream that sent a tool delta finishes with "tool_calls". */
  tool: boolean;
  /** vLLM's reading of the finished content (may throw a SimHttpError, as "required" does). */
  message(content: string | null): BodyMessage;
}

/** The end of reasoning: one token, streamed as nothing, kept in the text the parser splits. */
export const THINK_END = "</think>";

/** A finished choice's message. */
export interface ChoiceMessage {
  content: string | null;
  reasoning: string | null;
  toolCalls: ToolCallOut[];
  finishReason: string;
}

/** The token stream of one choice. */
export interface ChoiceOutput {
  /** Position of EOS when no limit cuts the choice first. */
  readonly eosAt: number;
  /** The next token (called once per position before eosAt). */
  next(): PlannedToken;
  readonly eosDelta: string;
  readonly tool: boolean;
  /** The message of the raw generated text (reasoning and `</think>` included). */
  message(raw: string, finish: "stop" | "length"): ChoiceMessage;
}

/** What every choice of a request shares. */
export interface OutputSpec {
  answer: AnswerSpec;
  /** Reasoning tokens before `</think>`; 0 for a model that does not reason. */
  reasoningTokens: number;
  /** include_reasoning: false drops reasoning_content from the non-stream message. */
  includeReasoning: boolean;
  /** EOS position of a text answer (outputTokens, later with min_tokens, never with ignore_eos). */
  textEosAt: number;
  /** A scripted answer (script.ts): this text, then EOS, in place of the word stream of a text answer. */
  scripted?: string | null;
}

/** Reasoning tokens of a reasoning model: the first half of a natural answer's tokens. */
export function reasoningTokens(outputTokens: number): number {
  return Math.floor((outputTokens - 1) / 2);
}

/** A fixed text (guided JSON, a scripted answer), split by the simulator's tokenizer, then EOS. */
function fixedTextBody(text: string): StructuredBody {
  return {
    tokens: splitTokens(text).map((piece) => ({ text: piece, delta: { kind: "content" } })),
    eosDelta: `{"content":""}`,
    tool: false,
    message: (content) => ({ content, toolCalls: [], toolsCalled: false }),
  };
}

function structuredBody(answer: AnswerSpec, random: () => number, choiceIndex: number): StructuredBody | null {
  if (answer.kind === "text") return null;
  if (answer.kind === "json") return fixedTextBody(answer.schema === null ? jsonObjectText(random) : jsonForSchema(answer.schema, random));
  return toolCallBody(answer.mode, answer.tools, random, choiceIndex);
}

/**
 * The choice drawn from `seedState` (prompt hash, seed, choice index). A text answer of a model
 * that does not reason is exactly the simulator's word stream (textgen.ts); guided values come
 * from a second PRNG so they do not shift the words.
 */
export function choiceOutput(spec: OutputSpec, seedState: number, choiceIndex: number): ChoiceOutput {
  const random = mulberry32(seedState);
  const r = spec.reasoningTokens;
  const thoughts = wordTokens(random);
  const words = wordTokens(random);
  const scripted = spec.answer.kind === "text" ? (spec.scripted ?? null) : null;
  const body = scripted !== null ? fixedTextBody(scripted) : structuredBody(spec.answer, mulberry32(seedState ^ 0x5bd1e995), choiceIndex);
  const head = r > 0 ? r + 1 : 0;
  let position = 0;
  return {
    eosAt: body ? head + body.tokens.length + 1 : spec.textEosAt,
    eosDelta: body?.eosDelta ?? `{"content":""}`,
    tool: body?.tool ?? false,
    next() {
      position++;
      if (position <= r) return { text: thoughts(), delta: { kind: "reasoning" } };
      if (position === r + 1 && r > 0) return { text: THINK_END, delta: { kind: "hidden" } };
      if (!body) return { text: words(), delta: { kind: "content" } };
      return body.tokens[position - head - 1] ?? { text: "", delta: { kind: "hidden" } };
    },
    message(raw, finish) {
      let content: string | null = raw;
      let reasoning: string | null = null;
      if (r > 0) {
        // deepseek_r1_reasoning_parser.py extract_reasoning_content: no `</think>` yet means all reasoning.
        const at = raw.indexOf(THINK_END);
        reasoning = at === -1 ? raw : raw.slice(0, at);
        content = at === -1 ? null : raw.slice(at + THINK_END.length) || null;
        if (!spec.includeReasoning) reasoning = null;
      }
      const message = body ? body.message(content) : { content, toolCalls: [], toolsCalled: false };
      return { content: message.content, reasoning, toolCalls: message.toolCalls, finishReason: message.toolsCalled ? "tool_calls" : finish };
    },
  };
}
