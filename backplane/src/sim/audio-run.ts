import type { IncomingMessage, ServerResponse } from "node:http";
import { CapturedResponse } from "./captured-response.ts";
import type { EngineState } from "./engine.ts";
import { runGeneration } from "./job.ts";
import type { ModelMetrics } from "./metrics.ts";
import type { GenerationRequest, PromptInfo, SimFault } from "./requests.ts";

/**
 * The engine requests behind one speech-to-text call. Like vLLM's speech_to_text.py, which makes
 * one engine request per 30-s piece of audio and reads them one after the other (each is submitted
 * when the previous one is done, since `engine_client.generate` starts on first iteration), the
 * pieces run in order through the same engine as chat: each waits for a slot, spends the time to
 * first token, decodes one token per step and counts in every metric. A client that goes away
 * aborts the running piece (slot freed, finished_reason="abort") and the rest never start.
 */

/** One piece of the audio and the engine request that transcribes it. */
export interface AudioPiece {
  index: number;
  /** Start and length in seconds. */
  start: number;
  seconds: number;
  /** Words the model says before EOS. */
  words: number;
  promptTokens: number;
  /** Output limit: max_model_len minus the prompt (the engine's length cap), at least 1. */
  limit: number;
  /** Seeds the piece's words: from the audio bytes and the piece's index. */
  hash: number;
}

/** How the engine requests are run. */
export interface AudioRunSpec {
  metrics: ModelMetrics;
  pieces: readonly AudioPiece[];
  fault: SimFault | null;
  faultAfter: number;
  ttftMs: number | null;
  /** performance.now() when the call arrived (the first engine request's arrival). */
  arrival: number;
  /** The caller's response: its `close` aborts the running piece. */
  client: ServerResponse;
}

/** How the run ended. */
export type AudioRunEnd =
  | { kind: "done" }
  /** The engine failed mid-generation (sim_fault error_mid_stream); `message` is its error. */
  | { kind: "error"; message: string }
  /** The engine cut the connection (sim_fault drop_mid_stream). */
  | { kind: "dropped" };

/** What the run reports, in order. */
export interface AudioRunHooks {
  /** A piece's engine request started prefill (its prompt tokens are counted now). */
  started(piece: AudioPiece): void;
  /** One generated token; `finish` is set on the piece's last one (EOS: empty text). */
  token(piece: AudioPiece, text: string, finish: "stop" | "length" | null): void;
  /** Called once, unless the client went away first. */
  end(outcome: AudioRunEnd): void;
}

/** The chat engine's request for one piece: a one-prompt completion, streamed so each token can be read. */
function engineRequest(piece: AudioPiece, spec: AudioRunSpec): GenerationRequest {
  // The decoder prompt is new for every piece (its audio differs): vLLM's prefix cache has nothing to share.
  const prompt: PromptInfo = { tokens: piece.promptTokens, hash: piece.hash, prefixTokens: [], prefixHashes: [] };
  return {
    endpoint: "completion",
    model: null,
    stream: true,
    includeUsage: false,
    continuousUsage: false,
    n: 1,
    bestOf: null,
    seed: 0,
    maxTokens: null,
    minTokens: 0,
    ignoreEos: false,
    temperature: null,
    topP: null,
    stop: [],
    requestId: null,
    // Transcription requests have no priority field (api-surfaces.md §4.5).
    priority: 0,
    answer: { kind: "text" },
    logprobs: null,
    includeReasoning: true,
    messages: [],
    images: 0,
    prompts: [prompt],
    // An injected mid-stream fault hits the first engine request.
    fault: piece.index === 0 ? spec.fault : null,
    faultAfter: spec.faultAfter,
    ttftMs: spec.ttftMs,
  };
}

interface OutputHooks {
  token(text: string, finish: "stop" | "length" | null): void;
  done(): void;
  error(message: string): void;
  dropped(): void;
}

/**
 * The response one engine request writes to: the completions stream the job renders, read back
 * event by event (`data: {…}` per token, `data: [DONE]`, or the in-band error event). It is tied to
 * no socket; emitting `close` on it aborts the job, as a client disconnect would.
 */
class EngineOutput extends CapturedResponse {
  readonly #hooks: OutputHooks;
  #settled = false;

  constructor(req: IncomingMessage, hooks: OutputHooks) {
    super(req);
    this.#hooks = hooks;
  }

  override destroy(): this {
    this.#settle(() => this.#hooks.dropped());
    return this;
  }

  #settle(report: () => void): void {
    if (this.#settled) return;
    this.#settled = true;
    report();
  }

  protected override received(text: string): void {
    for (const event of text.split("\n\n")) {
      if (!event.startsWith("data: ") || this.#settled) continue;
      const data = event.slice("data: ".length);
      if (data === "[DONE]") {
        this.#settle(() => this.#hooks.done());
        continue;
      }
      const parsed = JSON.parse(data) as { error?: { message: string }; choices?: { text: string; finish_reason: "stop" | "length" | null }[] };
      if (parsed.error) {
        const { message } = parsed.error;
        this.#settle(() => this.#hooks.error(message));
        continue;
      }
      const choice = parsed.choices?.[0];
      if (choice) this.#hooks.token(choice.text, choice.finish_reason);
    }
  }
}

/** Runs the pieces one after the other and reports their tokens; see the module comment. */
export function runAudioPieces(state: EngineState, spec: AudioRunSpec, hooks: AudioRunHooks): void {
  let current: EngineOutput | null = null;
  let ended = false;
  spec.client.on("close", () => current?.emit("close"));

  const finish = (outcome: AudioRunEnd) => {
    if (ended) return;
    ended = true;
    hooks.end(outcome);
  };

  const start = (index: number, arrival: number) => {
    const piece = spec.pieces[index];
    if (piece === undefined) return finish({ kind: "done" });
    let first = true;
    const output: EngineOutput = new EngineOutput(spec.client.req, {
      token(text, finishReason) {
        if (first) hooks.started(piece);
        // Whisper's text starts with a space; so does each piece, which joins them with "".
        hooks.token(piece, first && text !== "" ? ` ${text}` : text, finishReason);
        first = false;
      },
      done: () => start(index + 1, performance.now()),
      error: (message) => finish({ kind: "error", message }),
      dropped: () => finish({ kind: "dropped" }),
    });
    current = output;
    runGeneration(state, {
      request: engineRequest(piece, spec),
      metrics: spec.metrics,
      head: { endpoint: "completion", id: "", created: 0, model: spec.metrics.model.name },
      limits: [piece.limit],
      output: { answer: { kind: "text" }, reasoningTokens: 0, includeReasoning: true, textEosAt: piece.words + 1 },
      res: output,
      arrival,
    });
  };
  start(0, spec.arrival);
}
