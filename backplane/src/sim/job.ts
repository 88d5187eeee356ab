import type { ServerResponse } from "node:http";
import type { EngineState, LiveJob } from "./engine.ts";
import { SimHttpError, sendError, sendJson, sseErrorEvent } from "./errors.ts";
import { type FinishedReason, KV_BLOCK_TOKENS, type ModelMetrics, observe, queryPrefixCache } from "./metrics.ts";
import { chatLogprobsJson, completionLogprobsJson, EOS_TOKEN, type TokenLogprob, tokenLogprob } from "./logprobs.ts";
import { type ChoiceOutput, choiceOutput, type OutputSpec, type TokenDelta } from "./output.ts";
import type { GenerationRequest } from "./requests.ts";
import { mixSeed } from "./textgen.ts";
import * as wire from "./wire.ts";

/** One choice being generated. */
interface Sequence {
  index: number;
  promptTokens: number;
  /** PRNG state of the choice (prompt hash, seed, index): its tokens and their logprobs. */
  seedState: number;
  out: ChoiceOutput;
  /** Output limit; the model emits EOS at out.eosAt (Infinity with ignore_eos). */
  limit: number;
  generated: number;
  /** The generated text (non-stream), reasoning and `</think>` included. */
  text: string;
  /** End of the emitted text, kept to find stop strings that span tokens. */
  tail: string;
  finish: "stop" | "length" | null;
  stopReason: string | null;
  /** A tool-call delta went out: the stream finishes with "tool_calls". */
  toolStreamed: boolean;
  /** Non-stream: every token's logprobs. */
  logprobs: TokenLogprob[];
  /** Stream (completions): characters sent, the next text_offset. */
  sent: number;
}

/** A generated token: the text that goes out (a stop string may cut it), what it was, and its delta (null: EOS). */
interface Generated {
  piece: string;
  token: string;
  delta: TokenDelta | null;
}

/** Everything a generation needs once validated. */
export interface GenerationSpec {
  request: GenerationRequest;
  metrics: ModelMetrics;
  head: wire.ResponseHead;
  /** Per prompt: the effective output limit (request limit, else the rest of the context). */
  limits: number[];
  /** What the choices generate (answer shape, reasoning). */
  output: OutputSpec;
  res: ServerResponse;
  /** performance.now() when the request arrived. */
  arrival: number;
}

/** Steps run back to back before yielding to the event loop when interTokenMs is 0. */
const SYNC_STEPS = 256;

/**
 * Runs one chat/completions request through the scheduler: queue, prefill (ttft), then one
 * token per step for every choice, writing each SSE chunk as soon as its token exists.
 * Every generated token is one chunk (unless a parser holds it back); the last one carries
 * finish_reason, as in vLLM where the final engine output holds the last token (EOS shows up as
 * empty content, or the mode's own empty delta).
 */
export function runGeneration(state: EngineState, spec: GenerationSpec): void {
  const { options, scheduler } = state;
  const { request, metrics: m, head, res } = spec;
  const stream = request.stream;
  const seed = request.seed ?? options.seed;
  const stopMax = request.stop.reduce((max, s) => Math.max(max, s.length), 0);
  const promptTotal = request.prompts.reduce((sum, p) => sum + p.tokens, 0);
  const seqs: Sequence[] = [];
  request.prompts.forEach((prompt, p) => {
    for (let j = 0; j < request.n; j++) {
      const index = p * request.n + j;
      const seedState = mixSeed(prompt.hash, seed, j);
      const out = choiceOutput(spec.output, seedState, index);
      const limit = spec.limits[p] ?? 1;
      seqs.push({ index, promptTokens: prompt.tokens, seedState, out, limit, generated: 0, text: "", tail: "", finish: null, stopReason: null, toolStreamed: false, logprobs: [], sent: 0 });
    }
  });
  const planned = seqs.reduce((max, s) => Math.max(max, Math.min(s.limit, s.out.eosAt)), 1);
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
    priority: request.priority,
    start,
    get waiting() {
      return phase === "waiting";
    },
    abort: () => end("abort"),
  } satisfies LiveJob & { metrics: ModelMetrics; priority: number; start(): void };

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
      const token = nextToken(seq);
      produced++;
      if (seq.finish === null) open++;
      const lp = request.logprobs === null ? null : tokenLogprob(seq.seedState, seq.generated, token.token, request.logprobs);
      if (!stream) {
        if (lp) seq.logprobs.push(lp);
        continue;
      }
      const usage = request.continuousUsage ? { prompt: seq.promptTokens, completion: seq.generated } : null;
      if (head.endpoint === "chat") writeChatChunk(seq, token, lp, usage);
      else {
        res.write(wire.completionTokenChunk(prefix, seq.index, token.piece, lp && completionLogprobsJson([lp], seq.sent), seq.finish, seq.stopReason, usage));
        seq.sent += token.piece.length;
      }
    }
    steps++;
    m.generationTokens += produced;
    updateKv(produced);
    if (open === 0) finish();
  }

  /**
   * A chat chunk for a token, unless its parser holds it back (tool-call markup, `</think>`): then
   * only a choice's last token is sent, with an empty delta, as vLLM does.
   */
  function writeChatChunk(seq: Sequence, token: Generated, lp: TokenLogprob | null, usage: wire.ChunkUsage | null): void {
    let delta = token.delta === null ? seq.out.eosDelta : wire.deltaJson(token.delta, token.piece, token.token.length - token.piece.length);
    if (delta === null && seq.finish === null) return;
    if (token.delta?.kind === "tool") seq.toolStreamed = true;
    delta ??= "{}";
    // serving_chat.py: "tool_calls" once any tool delta was streamed (v0.10-0.11), else the engine's reason.
    const finish = seq.finish === null ? null : seq.out.tool && seq.toolStreamed ? "tool_calls" : seq.finish;
    res.write(wire.chatChunk(prefix, seq.index, delta, lp && chatLogprobsJson([lp]), finish, seq.stopReason, usage));
  }

  /** Draws the next token of a choice and decides whether it ends the choice. */
  function nextToken(seq: Sequence): Generated {
    const position = seq.generated + 1;
    seq.generated = position;
    if (position >= seq.out.eosAt) {
      seq.finish = "stop";
      return { piece: "", token: EOS_TOKEN, delta: null };
    }
    const planned = seq.out.next();
    let piece = planned.text;
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
    return { piece, token: planned.text, delta: planned.delta };
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
    const logprobs = (s: Sequence) => (request.logprobs === null ? null : head.endpoint === "chat" ? chatLogprobsJson(s.logprobs) : completionLogprobsJson(s.logprobs, 0));
    if (head.endpoint === "completion") {
      const choices = seqs.map((s) => ({ index: s.index, text: s.text, logprobs: logprobs(s), finishReason: s.finish ?? "stop", stopReason: s.stopReason }));
      sendJson(res, 200, wire.completionBody(head, choices, promptTotal, completion));
      return;
    }
    let choices: wire.FinishedChatChoice[];
    try {
      choices = seqs.map((s) => ({ index: s.index, message: s.out.message(s.text, s.finish ?? "stop"), logprobs: logprobs(s), stopReason: s.stopReason }));
    } catch (error) {
      // A "required" tool choice whose JSON array was cut: vLLM's pydantic validation fails (400).
      if (error instanceof SimHttpError) return sendError(res, error);
      throw error;
    }
    sendJson(res, 200, wire.chatBody(head, choices, promptTotal, completion));
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
