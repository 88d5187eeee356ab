import { imageTokens } from "./images.ts";

/**
 * The simulator's deterministic stand-in for a real tokenizer.
 *
 * Rules (documented in docs/simulator.md so other parts can reason about counts):
 * - A run of word characters (ASCII letters, digits, `_`, or any non-ASCII character) is
 *   ceil(length / 8) tokens, like a BPE splitting long words into pieces.
 * - Every other non-whitespace character (punctuation) is one token. Whitespace is free.
 * - A plain prompt (completions, embeddings) gets one BOS token in front.
 * - A chat prompt is BOS + per message (4 template tokens + name + content) + 3 for the
 *   assistant generation prompt, roughly what a Llama-3 chat template adds. Tool definitions,
 *   when sent, are one more block in front (4 + their JSON); each image adds its image tokens
 *   (images.ts).
 * Every word the simulator generates is at most 8 letters, so generated text re-counts to
 * exactly one token per word.
 */

/** Template overheads of the simulated chat template. */
export const CHAT_TEMPLATE_TOKENS = { bos: 1, perMessage: 4, generationPrompt: 3 } as const;

/** A chat message as the simulator reads it (only the fields that change the prompt). */
export interface SimChatMessage {
  role: string;
  content?: unknown;
  name?: unknown;
  tool_calls?: unknown;
}

const WORD_PIECE = 8;

function isWordChar(c: number): boolean {
  return c >= 0x80 || (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

/** Token count of raw text, without BOS or template tokens. */
export function countTextTokens(text: string): number {
  let tokens = 0;
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (isWordChar(c)) {
      run++;
      continue;
    }
    if (run > 0) tokens += Math.ceil(run / WORD_PIECE);
    run = 0;
    if (c > 32) tokens++;
  }
  if (run > 0) tokens += Math.ceil(run / WORD_PIECE);
  return tokens;
}

/**
 * Text split into the tokens countTextTokens counts, each carrying the whitespace before it (so
 * "{\"a\": 1}" is `{`, `"`, `a`, `"`, `:`, ` 1`, `}`); whitespace at the end joins the last token.
 * The pieces concatenate to the text, and there are countTextTokens(text) of them (one for
 * whitespace-only text).
 */
export function splitTokens(text: string): string[] {
  const pieces: string[] = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c <= 32) {
      i++;
      continue;
    }
    let end = i + 1;
    if (isWordChar(c)) while (end < text.length && end - i < WORD_PIECE && isWordChar(text.charCodeAt(end))) end++;
    pieces.push(text.slice(start, end));
    start = i = end;
  }
  if (start < text.length) {
    if (pieces.length === 0) pieces.push(text.slice(start));
    else pieces[pieces.length - 1] += text.slice(start);
  }
  return pieces;
}

/** Text of a message `content`: a string, or the text parts of a content-part array. */
export function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let out = "";
  for (const part of content as unknown[]) {
    if (typeof part === "string") out += part;
    else if (part !== null && typeof part === "object" && "text" in part && typeof part.text === "string") out += part.text;
  }
  return out;
}

/** The URLs of a content-part array's `image_url` parts, in order. */
export function contentImages(content: unknown): string[] {
  if (!Array.isArray(content)) return [];
  const urls: string[] = [];
  for (const part of content as unknown[]) {
    if (part === null || typeof part !== "object" || !("type" in part) || part.type !== "image_url" || !("image_url" in part)) continue;
    const image = part.image_url;
    if (image !== null && typeof image === "object" && "url" in image && typeof image.url === "string") urls.push(image.url);
  }
  return urls;
}

/** Everything in a message that the simulated template renders, as one string. */
function messageBody(message: SimChatMessage): string {
  let body = contentText(message.content);
  if (typeof message.name === "string") body = `${message.name}\n${body}`;
  if (message.tool_calls !== undefined && message.tool_calls !== null) body += JSON.stringify(message.tool_calls);
  return body;
}

/**
 * Prompt token count: a string is a plain prompt (BOS + text), an array is a chat conversation,
 * with the request's `tools` if it sends them.
 */
export function countPromptTokens(input: string | readonly SimChatMessage[], tools?: readonly unknown[] | null): number {
  if (typeof input === "string") return CHAT_TEMPLATE_TOKENS.bos + countTextTokens(input);
  return renderChat(input, tools).tokens;
}

/** A rendered chat prompt: token count, hash, and per-message cumulative prefixes (for prefix caching). */
export interface RenderedChat {
  tokens: number;
  hash: number;
  /** Image parts in the conversation. */
  images: number;
  /** prefixTokens[k] / prefixHashes[k]: the prompt up to and including message k. */
  prefixTokens: number[];
  prefixHashes: number[];
}

/**
 * Renders a conversation through the simulated chat template. Tool definitions, like the tools
 * block of real templates, come first; each image adds its tokens and its URL to the hash.
 */
export function renderChat(messages: readonly SimChatMessage[], tools?: readonly unknown[] | null): RenderedChat {
  let tokens: number = CHAT_TEMPLATE_TOKENS.bos;
  let hash = FNV_OFFSET;
  let images = 0;
  const prefixTokens: number[] = [];
  const prefixHashes: number[] = [];
  if (tools && tools.length > 0) {
    const json = JSON.stringify(tools);
    tokens += CHAT_TEMPLATE_TOKENS.perMessage + countTextTokens(json);
    hash = fnv1a(json, hash ^ 0x2f);
    prefixTokens.push(tokens);
    prefixHashes.push(hash);
  }
  for (const message of messages) {
    const body = messageBody(message);
    tokens += CHAT_TEMPLATE_TOKENS.perMessage + countTextTokens(body);
    hash = fnv1a(body, fnv1a(message.role, hash) ^ 0x1f);
    for (const url of contentImages(message.content)) {
      images++;
      tokens += imageTokens(url);
      hash = fnv1a(url, hash ^ 0x3f);
    }
    prefixTokens.push(tokens);
    prefixHashes.push(hash);
  }
  return { tokens: tokens + CHAT_TEMPLATE_TOKENS.generationPrompt, hash, images, prefixTokens, prefixHashes };
}

/** FNV-1a offset basis, the starting value of a hash chain. */
export const FNV_OFFSET = 0x811c9dc5;

/** 32-bit FNV-1a over UTF-16 code units, chained from `hash`. */
export function fnv1a(text: string, hash: number = FNV_OFFSET): number {
  let h = hash >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Hash of a token-id prompt. */
export function hashTokenIds(ids: readonly number[]): number {
  let h = FNV_OFFSET ^ 0x7f;
  for (const id of ids) {
    h ^= id & 0xffff;
    h = Math.imul(h, 0x01000193);
    h ^= id >>> 16;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
