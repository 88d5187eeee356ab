import type { ServerResponse } from "node:http";
import type { EngineState, LiveJob } from "./engine.ts";
import { SimHttpError, sendError, sendJson, sseErrorEvent } from "./errors.ts";
import { type FinishedReason, KV_BLOCK_TOKENS, type ModelMetrics, observe, queryPrefixCache } from "./metrics.ts";
import type { GenerationRequest } from "./requests.ts";
import { mixSeed, tokenSource } from "./textgen.ts";
import * as wire from "./wire.ts";

/** One choice being generated. */
interface Sequence {
  index: number;
  promptTokens: number;
  next: () => string;
  /** Output limit, and the token position at which the model emits EOS (Infinity with ignore_eos). */
  limit: number;
  eosAt: number;
  generated: number;
  text: string;
  /** End of the emitted text, kept to find stop strings that span tokens. */
  tail: string;
  finish: "stop" | "length" | null;
  stopReason: string | null;
}

/** Everything a generation needs once validated. */
export interface GenerationSpec {
  request: GenerationRequest;
  metrics: ModelMetrics;
  head: wire.ResponseHead;
  /** Per prompt: the effective output limit (request limit, else the rest of the context). */
  limits: number[];
  res: ServerResponse;
  /** performance.now() when the request arrived. */
  arrival: number;
}

/** Steps run back to back before yielding to the event loop when interTokenMs is 0. */
const SYNC_STEPS = 256;

/**
 * Runs one chat/completions request through the scheduler: queue, prefill (ttft), then one
 * token per step for every choice, writing each SSE chunk as soon as its token exists.
 * Every generated token is one chunk; the last one carries finish_reason, as in vLLM where the
 * final engine output holds the last token (EOS shows up as empty content).
 */
export function runGeneration(state: EngineState, spec: GenerationSpec): void {
  const { options, scheduler } = state;
  const { request, metrics: m, head, res } = spec;
  const stream = request.stream;
  const seed = request.seed ?? options.seed;
  const eosAt = request.ignoreEos ? Infinity : Math.max(options.outputTokens, request.minTokens + 1);
  const stopMax = request.stop.reduce((max, s) => Math.max(max, s.length), 0);
  const promptTotal = request.prompts.reduce((sum, p) => sum + p.tokens, 0);
  const seqs: Sequence[] = [];
  request.prompts.forEach((prompt, p) => {
    for (let j = 0; j < request.n; j++) {
      const next = tokenSource(mixSeed(prompt.hash, seed, j));
      const limit = spec.limits[p] ?? 1;
      seqs.push({ index: p * request.n + j, promptTokens: prompt.tokens, next, limit, eosAt, generated: 0, text: "", tail: "", finish: null, stopReason: null });
    }
  });
  const planned = seqs.reduce((max, s) => Math.max(max, Math.min(s.limit, s.eosAt)), 1);
  const streamFault = request.fault === "error_mid_stream" || request.fault === "drop_mid_stream";
  const faultAt = streamFault ? Math.min(request.faultAfter, planned - 1) : -1;
  const ttftMs = request.ttftMs ?? options.ttftMs;
  const interTokenMs = options.interTokenMs;
  const prefix = stream ? wire.chunkPrefix(head) : "";

  let phase: "waiting" | "running" | "done" = "waiting";
  let timer: NodeJS.Timeout | null = null;
  let immediate: NodeJS.Immediate | null = null;
  let scheduledAt = 0;
  let firstTokenAt = 0;
  let lastTokenAt = 0;
  let steps = 0;
  let kvTokens = 0;
  let kvBlocks = 0;

  const job = {
    metrics: m,
    start,
    get waiting() {
      return phase === "waiting";
    },
    abort: () => end("abort"),
  } satisfies LiveJob & { metrics: ModelMetrics; start(): void };

  function start(): void {
    phase = "running";
    scheduledAt = performance.now();
    observe(m.queue, (scheduledAt - spec.arrival) / 1000);
    let uncached = 0;
    for (const prompt of request.prompts) uncached += prompt.tokens - queryPrefixCache(m, prompt);
    updateKv(promptTotal);
    // Prefill: like vLLM, only the prompt tokens the prefix cache did not hold cost compute.
    const firstTokenMs = ttftMs + uncached * options.prefillMsPerToken;
    if (firstTokenMs > 0) timer = setTimeout(firstToken, firstTokenMs);
    else firstToken();
  }

  function firstToken(): void {
    timer = null;
    firstTokenAt = lastTokenAt = performance.now();
    m.promptTokens += promptTotal;
    observe(m.ttft, (firstTokenAt - spec.arrival) / 1000);
    observe(m.prefill, (firstTokenAt - scheduledAt) / 1000);
    if (faultAt === 0) return fault();
    if (stream && head.endpoint === "chat") {
      for (const seq of seqs) res.write(wire.chatRoleChunk(prefix, seq.index, request.continuousUsage ? seq.promptTokens : null));
    }
    run();
  }

  function run(): void {
    timer = null;
    immediate = null;
    for (let budget = SYNC_STEPS; phase === "running"; budget--) {
      if (steps === faultAt) return fault();
      step();
      if (phase !== "running") return;
      if (interTokenMs > 0) {
        // Scheduled against the first token's time so timer lateness does not accumulate.
        const delay = firstTokenAt + steps * interTokenMs - performance.now();
        timer = setTimeout(run, Math.max(0, delay));
        return;
      }
      if (budget <= 1) {
        immediate = setImmediate(run);
        return;
      }
    }
  }

  function step(): void {
    const now = performance.now();
    if (steps > 0) observe(m.interToken, (now - lastTokenAt) / 1000);
    lastTokenAt = now;
    let produced = 0;
    let open = 0;
    for (const seq of seqs) {
      if (seq.finish !== null) continue;
      const piece = nextPiece(seq);
      produced++;
      if (seq.finish === null) open++;
      if (!stream) continue;
      const usage = request.continuousUsage ? { prompt: seq.promptTokens, completion: seq.generated } : null;
      const build = head.endpoint === "chat" ? wire.chatTokenChunk : wire.completionTokenChunk;
      res.write(build(prefix, seq.index, piece, seq.finish, seq.stopReason, usage));
    }
    steps++;
    m.generationTokens += produced;
    updateKv(produced);
    if (open === 0) finish();
  }

  /** Draws the next token of a choice and decides whether it ends the choice. */
  function nextPiece(seq: Sequence): string {
    const position = seq.generated + 1;
    seq.generated = position;
    if (position >= seq.eosAt) {
      seq.finish = "stop";
      return "";
    }
    let piece = seq.next();
    if (position >= seq.limit) seq.finish = "length";
    if (stopMax > 0) {
      const search = seq.tail + piece;
      let at = -1;
      for (const stop of request.stop) {
        const i = search.indexOf(stop);
        if (i !== -1 && (at === -1 || i < at)) {
          at = i;
          seq.stopReason = stop;
        }
      }
      if (at !== -1) {
        // vLLM drops the stop string and what follows; a stop spanning tokens also trims the text.
        const cut = at - seq.tail.length;
        if (cut < 0) seq.text = seq.text.slice(0, seq.text.length + cut);
        piece = cut > 0 ? piece.slice(0, cut) : "";
        seq.finish = "stop";
      } else {
        seq.tail = stopMax > 1 ? search.slice(-(stopMax - 1)) : "";
      }
    }
    if (!stream) seq.text += piece;
    return piece;
  }

  function updateKv(tokensAdded: number): void {
    const before = kvBlocks;
    kvTokens += tokensAdded;
    kvBlocks = Math.ceil(kvTokens / KV_BLOCK_TOKENS);
    m.kvBlocks += kvBlocks - before;
  }

  function finish(): void {
    const completion = seqs.reduce((sum, s) => sum + s.generated, 0);
    const reason: FinishedReason = seqs.some((s) => s.finish === "length") ? "length" : "stop";
    end(reason);
    if (stream) {
      if (request.includeUsage) res.write(wire.usageChunk(prefix, promptTotal, completion));
      res.end(wire.DONE_EVENT);
      return;
    }
    const choices = seqs.map((s) => ({ index: s.index, text: s.text, finishReason: s.finish ?? "stop", stopReason: s.stopReason }));
    sendJson(res, 200, wire.completionBody(head, choices, promptTotal, completion));
  }

  /** The injected failure: an in-band error event, a cut connection, or a 500. */
  function fault(): void {
    end("abort");
    if (request.fault === "drop_mid_stream") {
      res.destroy();
      return;
    }
    const message = `Simulated engine failure after ${steps} tokens (sim_fault=error_mid_stream)`;
    if (stream) res.end(sseErrorEvent(message));
    else sendError(res, new SimHttpError(500, "InternalServerError", message));
  }

  /** Records the outcome once, frees the slot and stops all timers. */
  function end(reason: FinishedReason): void {
    if (phase === "done") return;
    const wasRunning = phase === "running";
    if (!wasRunning) scheduler.cancel(job);
    phase = "done";
    if (timer) clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
    state.live.delete(job);
    const now = performance.now();
    m.success[reason]++;
    observe(m.e2e, (now - spec.arrival) / 1000);
    observe(m.requestPromptTokens, promptTotal);
    observe(m.requestGenerationTokens, seqs.reduce((sum, s) => sum + s.generated, 0));
    if (firstTokenAt > 0) observe(m.decode, (now - firstTokenAt) / 1000);
    if (wasRunning) {
      m.kvBlocks -= kvBlocks;
      scheduler.release(job);
    }
  }

  // A client that goes away aborts its request, like vLLM's with_cancellation / stream abort.
  res.on("close", () => end("abort"));
  if (stream) {
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    res.flushHeaders();
  }
  state.live.add(job);
  scheduler.submit(job);
}
