/**
 * The callers of the exactness run (exactness.ts): concurrent clients, each bound to one workerd
 * (round-robin over them), sending small chat completions, streamed and non-streamed in turn, and
 * sorting every answer into admitted, refused or an error.
 */
import { setTimeout as sleep } from "node:timers/promises";

/** What the clients saw, in total and per workerd. */
export interface Tally {
  /** Answered 200 with a complete body. */
  admitted: number;
  /** Answered 429 with an OpenAI-shaped error carrying the expected code. */
  refused: number;
  /** Anything else (another status or code, a cut or failed body, a network error). */
  errors: number;
  /** The first few errors, for the report. */
  errorSamples: string[];
  /** Admitted per workerd (same order as the URLs). */
  admittedBy: number[];
}

/** Who sends what, where. */
export interface Traffic {
  /** Base URLs of the workerd processes. */
  urls: string[];
  apiKey: string;
  model: string;
  /** max_tokens of every request. */
  maxTokens: number;
  /** Clients sending at once. */
  concurrency: number;
  /** The `error.code` a refusal must carry (rate_limit_exceeded, insufficient_quota). */
  refusalCode: string;
  signal?: AbortSignal;
}

const MAX_ERROR_SAMPLES = 5;
const REQUEST_TIMEOUT_MS = 30_000;
// A refused client asks again after this pause: often enough to use capacity as soon as it frees
// up (a refill, a settlement), rarely enough not to busy-loop two cores.
const REFUSED_PAUSE_MS = 50;

type Outcome = { kind: "admitted" } | { kind: "refused" } | { kind: "error"; message: string };

/** An empty tally for `workerds` processes. */
export function newTally(workerds: number): Tally {
  return { admitted: 0, refused: 0, errors: 0, errorSamples: [], admittedBy: Array.from({ length: workerds }, () => 0) };
}

function record(tally: Tally, target: number, outcome: Outcome): void {
  if (outcome.kind === "admitted") {
    tally.admitted++;
    tally.admittedBy[target] = (tally.admittedBy[target] ?? 0) + 1;
  } else if (outcome.kind === "refused") {
    tally.refused++;
  } else {
    tally.errors++;
    if (tally.errorSamples.length < MAX_ERROR_SAMPLES) tally.errorSamples.push(outcome.message);
  }
}

/** The request body: one short user message, a fixed max_tokens, streamed or not. */
export function chatBody(model: string, maxTokens: number, stream: boolean): string {
  return JSON.stringify({ model, messages: [{ role: "user", content: "Count the trains." }], max_tokens: maxTokens, ...(stream ? { stream: true } : {}) });
}

/** A served answer: a completion with choices, or an SSE stream of chunks ending in [DONE] with no error event. */
function completeBody(text: string, stream: boolean): boolean {
  if (!stream) {
    try {
      const json = JSON.parse(text) as { choices?: unknown };
      return Array.isArray(json.choices) && json.choices.length > 0;
    } catch {
      return false;
    }
  }
  const data = text
    .split(/\r?\n/)
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).trim());
  return data.at(-1) === "[DONE]" && data.length > 1 && !data.some((d) => d.startsWith('{"error"'));
}

/** The `error.code` of an OpenAI-shaped error body (`{"error":{"message","type","code"}}`), or null. */
function errorCode(text: string): string | null {
  try {
    const { error } = JSON.parse(text) as { error?: { message?: unknown; type?: unknown; code?: unknown } };
    if (typeof error?.message !== "string" || typeof error.type !== "string" || typeof error.code !== "string") return null;
    return error.code;
  } catch {
    return null;
  }
}

async function send(t: Traffic, url: string, stream: boolean): Promise<Outcome> {
  const signals = [AbortSignal.timeout(REQUEST_TIMEOUT_MS), ...(t.signal ? [t.signal] : [])];
  let status: number;
  let text: string;
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.apiKey}`, "content-type": "application/json" },
      body: chatBody(t.model, t.maxTokens, stream),
      signal: AbortSignal.any(signals),
    });
    status = res.status;
    text = await res.text();
  } catch (err) {
    t.signal?.throwIfAborted();
    return { kind: "error", message: `${stream ? "streamed" : "non-streamed"} request to ${url} failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (status === 200 && completeBody(text, stream)) return { kind: "admitted" };
  if (status === 429 && errorCode(text) === t.refusalCode) return { kind: "refused" };
  return { kind: "error", message: `${stream ? "streamed" : "non-streamed"} request to ${url}: HTTP ${status} ${text.slice(0, 300)}` };
}

/**
 * Every client sends, one request at a time, until every client has been refused at least once (a
 * refused client keeps asking, after a short pause, until then); resolves once the last answer is
 * in. Returns false when that did not happen within `timeoutMs`.
 */
export async function untilAllRefused(t: Traffic, tally: Tally, timeoutMs: number): Promise<boolean> {
  const refusedClients = new Set<number>();
  const deadline = Date.now() + timeoutMs;
  let done = false;
  const client = async (i: number) => {
    const target = i % t.urls.length;
    const url = t.urls[target] ?? "";
    for (let n = 0; !done; n++) {
      if (Date.now() > deadline) {
        done = true;
        break;
      }
      const outcome = await send(t, url, (i + n) % 2 === 0);
      record(tally, target, outcome);
      if (outcome.kind === "admitted") continue;
      if (outcome.kind === "refused") refusedClients.add(i);
      if (refusedClients.size === t.concurrency) done = true;
      else await sleep(REFUSED_PAUSE_MS, undefined, { signal: t.signal });
    }
  };
  await Promise.all(Array.from({ length: t.concurrency }, (_, i) => client(i)));
  return refusedClients.size === t.concurrency;
}

/**
 * One request from every client at once; returns how many were admitted. Each workerd's clients
 * alternate streamed and non-streamed, starting with the other kind in the next round.
 */
export async function oneRound(t: Traffic, tally: Tally, round: number): Promise<number> {
  const before = tally.admitted;
  await Promise.all(
    Array.from({ length: t.concurrency }, async (_, i) => {
      const target = i % t.urls.length;
      const stream = (Math.floor(i / t.urls.length) + round) % 2 === 0;
      record(tally, target, await send(t, t.urls[target] ?? "", stream));
    }),
  );
  return tally.admitted - before;
}
