import { createHash } from "node:crypto";
import { imageTokens } from "./images.ts";
import { contentImages, contentText, countTextTokens, type SimChatMessage, splitTokens } from "./tokenizer.ts";

/**
 * Token ids for the simulator's tokenizer (tokenizer.ts), so /tokenize and /detokenize can answer
 * with ids that mean the same on every engine and after a restart, as a real vocabulary's do.
 *
 * A token is one piece of `splitTokens`: the whitespace before it, then a word run of at most 8
 * characters or one other character. Its id is, by what it holds:
 * - one ASCII punctuation character after "", " ", "\n" or "\n\n": `prefix × 128 + code` (below 512);
 * - 1–8 ASCII word characters (`0-9A-Z_a-z`) after one of those prefixes:
 *   `2^17 + (n − 1) × 4 + prefix`, where n numbers the word in bijective base 63 (below 2^50);
 * - anything else (non-ASCII text, other whitespace, the last piece's trailing whitespace): `2^50 +`
 *   52 bits of the piece's SHA-256. Only these need a table to be read back; it is shared by every
 *   engine in the process and keeps the latest 100 000 such pieces.
 * Template tokens have Llama 3's ids (`<|begin_of_text|>` 128000, `<|start_header_id|>` 128006,
 * `<|end_header_id|>` 128007, `<|eot_id|>` 128009), `<|image|>` is 128256, and the usual roles have
 * ids of their own from 128100, so a role is always one token.
 */

/** One token: its id and its text (what `convert_ids_to_tokens` and decoding give). */
export interface SimToken {
  id: number;
  text: string;
}

const special = (id: number, text: string): SimToken => ({ id, text });
/** The template's special tokens. */
export const SPECIAL_TOKENS = {
  bos: special(128000, "<|begin_of_text|>"),
  startHeader: special(128006, "<|start_header_id|>"),
  endHeader: special(128007, "<|end_header_id|>"),
  eot: special(128009, "<|eot_id|>"),
  image: special(128256, "<|image|>"),
} as const;
const ROLES = ["system", "user", "assistant", "tool", "developer", "ipython", "tools"] as const;
const ROLE_BASE = 128100;

const PREFIXES = ["", " ", "\n", "\n\n"] as const;
const WORD_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
const WORD_MAX_CHARS = 8;
const WORD_BASE = 2 ** 17;
const HASH_BASE = 2 ** 50;
const HASH_SPAN = 2 ** 52;
const HASH_TABLE_LIMIT = 100_000;

const bySpecialId = new Map<number, string>([
  ...Object.values(SPECIAL_TOKENS).map((t): [number, string] => [t.id, t.text]),
  ...ROLES.map((role, i): [number, string] => [ROLE_BASE + i, role]),
]);
/** Pieces with hashed ids, by id, oldest first (the process's shared reverse table). */
const hashed = new Map<number, string>();

function isWordCode(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

function hashedId(piece: string): number {
  const digest = createHash("sha256").update(piece, "utf8").digest();
  const id = HASH_BASE + (digest.readUInt32BE(0) & 0xfffff) * 2 ** 32 + digest.readUInt32BE(4);
  if (!hashed.has(id)) {
    if (hashed.size >= HASH_TABLE_LIMIT) hashed.delete(hashed.keys().next().value ?? id);
    hashed.set(id, piece);
  }
  return id;
}

/** The id of one piece of text. */
export function pieceId(piece: string): number {
  let prefix = 0;
  let core = piece;
  for (let p = PREFIXES.length - 1; p > 0; p--) {
    const candidate = PREFIXES[p] ?? "";
    if (piece.startsWith(candidate) && piece.length > candidate.length) {
      prefix = p;
      core = piece.slice(candidate.length);
      break;
    }
  }
  const first = core.charCodeAt(0);
  if (core.length === 1 && first > 32 && first < 128 && !isWordCode(first)) return prefix * 128 + first;
  if (core.length > 0 && core.length <= WORD_MAX_CHARS && [...core].every((ch) => isWordCode(ch.charCodeAt(0)))) {
    let n = 0;
    for (const ch of core) n = n * 63 + WORD_ALPHABET.indexOf(ch) + 1;
    return WORD_BASE + (n - 1) * 4 + prefix;
  }
  return hashedId(piece);
}

/** The text of a token id, or null when the id means nothing in this vocabulary. */
export function idText(id: number): string | null {
  if (!Number.isSafeInteger(id) || id < 0) return null;
  if (id < PREFIXES.length * 128) {
    const code = id % 128;
    return code > 32 && !isWordCode(code) ? `${PREFIXES[Math.floor(id / 128)] ?? ""}${String.fromCharCode(code)}` : null;
  }
  const named = bySpecialId.get(id);
  if (named !== undefined) return named;
  if (id >= WORD_BASE && id < HASH_BASE) {
    let n = Math.floor((id - WORD_BASE) / 4) + 1;
    let core = "";
    while (n > 0 && core.length <= WORD_MAX_CHARS) {
      core = WORD_ALPHABET.charAt((n - 1) % 63) + core;
      n = Math.floor((n - 1) / 63);
    }
    return core.length <= WORD_MAX_CHARS ? `${PREFIXES[(id - WORD_BASE) % 4] ?? ""}${core}` : null;
  }
  return id < HASH_BASE + HASH_SPAN ? (hashed.get(id) ?? null) : null;
}

/** The tokens of raw text, as many as `countTextTokens` counts (whitespace-only text has none). */
export function textTokens(text: string): SimToken[] {
  if (countTextTokens(text) === 0) return [];
  return splitTokens(text).map((piece) => ({ id: pieceId(piece), text: piece }));
}

function roleToken(role: string): SimToken {
  const known = ROLES.indexOf(role as (typeof ROLES)[number]);
  return { id: known === -1 ? pieceId(role) : ROLE_BASE + known, text: role };
}

/** Everything in a message the simulated template renders as text (tokenizer.ts renders the same). */
function messageBody(message: SimChatMessage): string {
  let body = contentText(message.content);
  if (typeof message.name === "string") body = `${message.name}\n${body}`;
  if (message.tool_calls !== undefined && message.tool_calls !== null) body += JSON.stringify(message.tool_calls);
  return body;
}

/** How a conversation is rendered (vLLM's TokenizeChatRequest flags). */
export interface ChatRenderFlags {
  addGenerationPrompt: boolean;
  continueFinalMessage: boolean;
  /** One more BOS in front of the template's own (vLLM: "on top of what is added by the chat template"). */
  addSpecialTokens: boolean;
}

/**
 * The tokens of a conversation through the simulated template: BOS, the tools block when `tools` is
 * non-empty, per message `<|start_header_id|>` role `<|end_header_id|>` text images `<|eot_id|>`, then
 * the generation prompt. With the default flags there are exactly `renderChat(messages, tools).tokens`
 * of them, the chat prompt_tokens. `continueFinalMessage` leaves the last message open (no `<|eot_id|>`).
 */
export function chatTokens(messages: readonly SimChatMessage[], tools: readonly unknown[] | null, flags: ChatRenderFlags): SimToken[] {
  const { bos, startHeader, endHeader, eot, image } = SPECIAL_TOKENS;
  const out: SimToken[] = flags.addSpecialTokens ? [bos, bos] : [bos];
  const block = (role: string, body: string, images: readonly string[], open: boolean) => {
    out.push(startHeader, roleToken(role), endHeader, ...textTokens(body));
    for (const url of images) for (let i = imageTokens(url); i > 0; i--) out.push(image);
    if (!open) out.push(eot);
  };
  if (tools && tools.length > 0) block("tools", JSON.stringify(tools), [], false);
  messages.forEach((message, i) => {
    block(message.role, messageBody(message), contentImages(message.content), flags.continueFinalMessage && i === messages.length - 1);
  });
  if (flags.addGenerationPrompt) out.push(startHeader, roleToken("assistant"), endHeader);
  return out;
}
