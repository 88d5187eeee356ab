import { mixSeed, mulberry32, pickWord } from "./textgen.ts";

/**
 * Deterministic log-probabilities of the simulated model, in vLLM's shapes (serving_chat.py
 * `_create_chat_logprobs`, serving_completion.py `_create_completion_logprobs`). The sampled
 * token is always the most likely one, so vLLM V1's lists (the sampled token first, then the
 * top-k) come out sorted. Values have four decimals and are never whole numbers, so JavaScript
 * prints them as Python does: the sampled token's logprob is in [-0.9999, -0.0001], and every
 * next alternative is 2.5 to 3.5 lower (the probabilities sum to less than 1).
 */

/** The EOS token as a Llama-3 tokenizer decodes it (it counts, and has a logprob, but no text). */
export const EOS_TOKEN = "<|eot_id|>";

/** One generated token's logprob and its top alternatives (the token itself first). */
export interface TokenLogprob {
  token: string;
  logprob: number;
  /** The top-k: the sampled token, then k-1 alternatives, most likely first. */
  top: { token: string; logprob: number }[];
}

const TEN_THOUSANDTHS = 10_000;

/** A logprob of -(n / 10000), nudged off whole numbers. */
function value(n: number): number {
  return -(n % TEN_THOUSANDTHS === 0 ? n + 1 : n) / TEN_THOUSANDTHS;
}

/** The logprob of the token at `position` (1-based) of the choice drawn from `seedState`, with k alternatives. */
export function tokenLogprob(seedState: number, position: number, token: string, k: number): TokenLogprob {
  const random = mulberry32(mixSeed(seedState, position, 0x1092));
  let n = 1 + (random() % 9999);
  const logprob = value(n);
  const top = [{ token, logprob }];
  const used = new Set([token]);
  const space = /^\s/.test(token) ? " " : "";
  while (top.length < k) {
    let alternative = `${space}${pickWord(random())}`;
    for (let tries = 0; used.has(alternative); tries++) alternative = `${space}${pickWord(random())}${tries > 20 ? String(tries) : ""}`;
    used.add(alternative);
    n += 25_000 + (random() % TEN_THOUSANDTHS);
    top.push({ token: alternative, logprob: value(n) });
  }
  return { token, logprob, top: top.slice(0, k) };
}

function bytes(token: string): string {
  return `[${Array.from(Buffer.from(token, "utf8")).join(",")}]`;
}

/** ChatCompletionLogProbsContent of one token (no `refusal`: vLLM's ChatCompletionLogProbs has only `content`). */
function chatEntry(entry: TokenLogprob): string {
  const top = entry.top.map((t) => `{"token":${JSON.stringify(t.token)},"logprob":${t.logprob},"bytes":${bytes(t.token)}}`);
  return `{"token":${JSON.stringify(entry.token)},"logprob":${entry.logprob},"bytes":${bytes(entry.token)},"top_logprobs":[${top.join(",")}]}`;
}

/** Chat `logprobs` of some tokens: `{"content":[…]}`. */
export function chatLogprobsJson(entries: readonly TokenLogprob[]): string {
  return `{"content":[${entries.map(chatEntry).join(",")}]}`;
}

/**
 * Completions `logprobs` (the legacy shape): text offsets from `offset`, each token's logprob,
 * and top_logprobs dicts with the sampled token and up to k-1 others (at least the sampled one:
 * vLLM keeps the top num+1 entries of a dict that starts with the sampled token).
 */
export function completionLogprobsJson(entries: readonly TokenLogprob[], offset: number): string {
  const offsets: number[] = [];
  let at = offset;
  for (const entry of entries) {
    offsets.push(at);
    at += entry.token.length;
  }
  const tops = entries.map((entry) => {
    const top = entry.top.length > 0 ? entry.top : [{ token: entry.token, logprob: entry.logprob }];
    return `{${top.map((t) => `${JSON.stringify(t.token)}:${t.logprob}`).join(",")}}`;
  });
  return (
    `{"text_offset":[${offsets.join(",")}],"token_logprobs":[${entries.map((e) => e.logprob).join(",")}],` +
    `"tokens":[${entries.map((e) => JSON.stringify(e.token)).join(",")}],"top_logprobs":[${tops.join(",")}]}`
  );
}
