import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { audioDuration } from "../../../schema/contracts/audio-duration.ts";
import { type AudioRequest, type AudioTask, parseAudioForm, readForm } from "./audio-request.ts";
import { type AudioPiece, type AudioRunEnd, type AudioRunSpec, runAudioPieces } from "./audio-run.ts";
import { type AudioHead, type AudioSegment, type AudioUsage, audioChunk, audioTextBody, audioUsageChunk, audioVerboseBody } from "./audio-wire.ts";
import { type EngineState, resolveModel } from "./engine.ts";
import { badRequest, SimHttpError, sendError, sendJson, sseErrorEvent } from "./errors.ts";
import { randomHex } from "./generate.ts";
import { servedName } from "./lora.ts";
import type { ModelMetrics } from "./metrics.ts";
import { mixSeed } from "./textgen.ts";
import { countTextTokens } from "./tokenizer.ts";
import { DONE_EVENT } from "./wire.ts";

/**
 * vLLM's `POST /v1/audio/transcriptions` and `/v1/audio/translations` (speech_to_text.py and the
 * routes in api_server.py) on a `transcribe` model, a simulated Whisper. The audio is not listened
 * to: its length (schema/contracts/audio-duration.ts) sets how much the model says, and its bytes
 * which words. Checks run in vLLM's order; see docs/simulator.md for the wire and the counting.
 */

/** Whisper's window: longer audio is cut into pieces of this many seconds (`max_audio_clip_s`). */
const CLIP_SECONDS = 30;
/** How fast the simulated speaker talks. */
const WORDS_PER_SECOND = 2.5;
/** `<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>`: Whisper's decoder prompt. */
const DECODER_PROMPT_TOKENS = 4;
/** VLLM_MAX_AUDIO_CLIP_FILESIZE_MB's default. */
const MAX_FILE_MB = 25;
/** Whisper's language when the request names none (whisper.py `validate_language`). */
const DEFAULT_LANGUAGE = "en";

/** Starlette's StreamingResponse(media_type="text/event-stream"). */
const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8" } as const;

/** Decoder prompt tokens of one piece: Whisper's four, plus `<|prev|>` and the prompt's text when one is given. */
function audioPromptTokens(prompt: string): number {
  return DECODER_PROMPT_TOKENS + (prompt === "" ? 0 : 1 + countTextTokens(prompt));
}

/** Cuts `durationS` into 30-s pieces (the last one shorter), each an engine request. */
function planPieces(audio: Uint8Array, durationS: number, promptTokens: number, maxModelLen: number): AudioPiece[] {
  // speech_to_text.py splits only audio longer than the window (vLLM picks a quiet split point in
  // the last second of each window; the simulator cuts at exactly 30 s).
  const count = durationS > CLIP_SECONDS ? Math.ceil(durationS / CLIP_SECONDS) : 1;
  const digest = createHash("sha256").update(audio).digest().readUInt32BE(0);
  return Array.from({ length: count }, (_, index) => {
    const start = index * CLIP_SECONDS;
    const seconds = Math.min(CLIP_SECONDS, durationS - start);
    return {
      index,
      start,
      seconds,
      words: Math.max(1, Math.round(seconds * WORDS_PER_SECOND)),
      promptTokens,
      limit: Math.max(1, maxModelLen - promptTokens),
      hash: mixSeed(digest, 0, index),
    };
  });
}

/** Everything validated, ready to run. */
interface AudioCall {
  task: AudioTask;
  request: AudioRequest;
  metrics: ModelMetrics;
  head: AudioHead;
  durationS: number;
  pieces: AudioPiece[];
  arrival: number;
}

function runSpec(call: AudioCall, client: ServerResponse): AudioRunSpec {
  const { fault, faultAfter, ttftMs } = call.request;
  return { metrics: call.metrics, pieces: call.pieces, fault, faultAfter, ttftMs, arrival: call.arrival, client };
}

/**
 * A stream: the headers go out at once (vLLM returns its StreamingResponse before the engine
 * runs), then one chunk per generated token, the usage chunk with `stream_include_usage`, and
 * `[DONE]`. A failure after the headers is the in-band error event and `[DONE]`.
 */
function stream(state: EngineState, call: AudioCall, res: ServerResponse): void {
  const { request, head } = call;
  const usage: AudioUsage = { prompt: 0, completion: 0 };
  res.writeHead(200, SSE_HEADERS);
  res.flushHeaders();
  runAudioPieces(state, runSpec(call, res), {
    started(piece) {
      usage.prompt += piece.promptTokens;
    },
    token(_piece, text, finish) {
      usage.completion++;
      res.write(audioChunk(head, text, finish, request.continuousUsage ? usage : null));
    },
    end(outcome) {
      if (outcome.kind === "dropped") return void res.destroy();
      if (outcome.kind === "error") return void res.end(sseErrorEvent(outcome.message));
      if (request.includeUsage) res.write(audioUsageChunk(head, usage));
      res.end(DONE_EVENT);
    },
  });
}

/** A JSON answer once every piece is done: `json` and `text` alike, or `verbose_json`. */
function collect(state: EngineState, call: AudioCall, res: ServerResponse): void {
  const { request, task } = call;
  const segments: AudioSegment[] = call.pieces.map((p) => ({ index: p.index, start: p.start, seconds: p.seconds, text: "" }));
  runAudioPieces(state, runSpec(call, res), {
    started() {},
    token(piece, text) {
      const segment = segments[piece.index];
      if (segment) segment.text += text;
    },
    end(outcome: AudioRunEnd) {
      if (outcome.kind === "dropped") return void res.destroy();
      if (outcome.kind === "error") return sendError(res, new SimHttpError(500, "InternalServerError", outcome.message));
      const text = segments.map((s) => s.text).join("");
      const body =
        request.responseFormat === "verbose_json"
          ? audioVerboseBody(call.durationS, request.language ?? DEFAULT_LANGUAGE, text, segments, request.temperature)
          : audioTextBody(task, text, call.durationS);
      sendJson(res, 200, body);
    },
  });
}

/**
 * V1 processor.py `_validate_model_input`: a decoder prompt longer than the model refuses the
 * engine request. It is raised when the first piece is submitted: a 400 before a JSON answer, but
 * inside a stream whose 200 is already out.
 */
function promptTooLong(call: AudioCall, res: ServerResponse): boolean {
  const tokens = call.pieces[0]?.promptTokens ?? 0;
  const max = call.metrics.model.maxModelLen;
  if (tokens <= max) return false;
  const message = `The decoder prompt (length ${tokens}) is longer than the maximum model length of ${max}. Make sure that \`max_model_len\` is no smaller than the number of text tokens.`;
  if (!call.request.stream) throw badRequest(message);
  res.writeHead(200, SSE_HEADERS);
  res.end(sseErrorEvent(message, "BadRequestError", 400));
  return true;
}

/** One speech-to-text route: form, model, format, audio, then the engine requests. */
async function handleAudio(
  task: AudioTask,
  state: EngineState,
  req: IncomingMessage,
  raw: Buffer,
  res: ServerResponse,
  headerRequestId: string | undefined,
  arrival: number,
): Promise<void> {
  const request = await parseAudioForm(task, await readForm(req.headers["content-type"], raw));
  // The upload was read asynchronously: a client that left meanwhile gets nothing started.
  if (res.destroyed || res.writableEnded) return;
  const metrics = resolveModel(state, request.model, task === "transcribe" ? "transcription" : "translation");
  if (!["text", "json", "verbose_json"].includes(request.responseFormat)) {
    // Two string literals joined without a space in speech_to_text.py, hence "response_format`text`".
    throw badRequest("Currently only support response_format`text`, `json` or `verbose_json`");
  }
  if (request.responseFormat === "verbose_json" && request.stream) throw badRequest("verbose_json format doesn't support streaming case");
  if (request.audio.length / 1024 ** 2 > MAX_FILE_MB) throw badRequest("Maximum file size exceeded.");
  const decoded = audioDuration(request.audio);
  // The wording of newer vLLM, which maps libsndfile's "unrecognised format", "malformed file" and
  // "unsupported encoding" errors to a ValueError (speech_to_text.py `_BAD_SF_CODES`); vLLM up to
  // 0.11 let librosa's exception through as a 500 "Error opening <_io.BytesIO …>: Format not recognised.".
  if (decoded === null) throw badRequest("Invalid or unsupported audio file.");
  if (request.fault === "engine_error") {
    // launcher.py: EngineDeadError / EngineGenerateError become a bare 500 with an empty body.
    res.writeHead(500, { "content-length": 0 });
    res.end();
    return;
  }
  const durationS = decoded.ms / 1000;
  const call: AudioCall = {
    task,
    request,
    metrics,
    // speech_to_text.py: request_id = f"{task_type}-{_base_request_id(raw_request)}", also the chunks' id.
    head: { task, id: `${task}-${headerRequestId || randomHex()}`, created: Math.floor(Date.now() / 1000), model: servedName(state, request.model, metrics) },
    durationS,
    pieces: planPieces(request.audio, durationS, audioPromptTokens(request.prompt), metrics.model.maxModelLen),
    arrival,
  };
  if (promptTooLong(call, res)) return;
  if (request.stream) stream(state, call, res);
  else collect(state, call, res);
}

/** A speech-to-text route: it reads the multipart body itself (routes.ts hands over the raw bytes). */
export type AudioRoute = (state: EngineState, req: IncomingMessage, raw: Buffer, res: ServerResponse, requestId: string | undefined, arrival: number) => Promise<void>;

/** The speech-to-text routes. */
export const AUDIO_ROUTES: Record<string, AudioRoute> = {
  "/v1/audio/transcriptions": (...args) => handleAudio("transcribe", ...args),
  "/v1/audio/translations": (...args) => handleAudio("translate", ...args),
};
