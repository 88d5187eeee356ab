import { audioDuration } from "../../../schema/contracts/audio-duration.ts";
import { ApiError } from "../errors.ts";
import { boundaryOf, encodeMultipart, parseMultipart, type FormPart } from "./multipart.ts";
import type { Endpoint, ProxyRequest } from "../proxy/validate.ts";

/** The speech-to-text routes (OpenAI's; vLLM serves both: api-surfaces.md §4.4). */
export type AudioEndpoint = "transcriptions" | "translations";

/** Whether an endpoint takes an audio upload. */
export function isAudioEndpoint(endpoint: Endpoint): endpoint is AudioEndpoint {
  return endpoint === "transcriptions" || endpoint === "translations";
}

/** Uploads are limited to 25 MB, as OpenAI's and vLLM's (VLLM_MAX_AUDIO_CLIP_FILESIZE_MB) are. */
export const MAX_AUDIO_BYTES = 25 * 1024 * 1024;

/**
 * Audio an engine hears in one go: vLLM splits longer audio into 30-second chunks (Whisper's
 * window), each an engine request that can use the whole context. Admission prices every chunk.
 */
export const AUDIO_CHUNK_MS = 30_000;

/** The response formats OpenAI documents; the engine says which of them it serves. */
const FORMATS = new Set(["json", "text", "verbose_json", "srt", "vtt"]);
/** The formats that can stream (OpenAI and vLLM refuse to stream the others). */
const STREAMABLE = new Set(["json", "text"]);

function invalid(param: string, message: string): ApiError {
  return new ApiError("invalid_value", message, { param });
}

/** The text fields of a form by name (the first value of each), and its parts in order. */
class Fields {
  readonly parts: FormPart[];

  constructor(parts: FormPart[]) {
    this.parts = parts;
  }

  get(name: string): string | FormPart | null {
    const part = this.parts.find((p) => p.name === name);
    if (!part) return null;
    return "value" in part ? part.value : part;
  }
}

/** A form boolean as pydantic reads one ("true"/"false", "1"/"0", any case); absent is false. */
function formBoolean(form: Fields, field: string): boolean {
  const value = form.get(field);
  if (value === null) return false;
  if (typeof value !== "string") throw invalid(field, `'${field}' must be true or false, not a file.`);
  const v = value.trim().toLowerCase();
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw invalid(field, `'${field}' must be true or false, got '${value.slice(0, 40)}'.`);
}

function optionalNumber(form: Fields, field: string, min: number, max: number): void {
  const value = form.get(field);
  if (value === null) return;
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : Number.NaN;
  if (!Number.isFinite(n) || n < min || n > max) throw invalid(field, `'${field}' must be a number between ${min} and ${max}.`);
}

/**
 * One value per field, the one validated here (the first): the engine's form parser (Starlette's)
 * reads a repeated field's last value, so a second 'file' or 'model' would be transcribed but not
 * priced. Only array fields (`timestamp_granularities[]`) repeat. `stream_include_usage` is forced
 * on for streams.
 */
function upstreamParts(parts: FormPart[], stream: boolean): FormPart[] {
  const seen = new Set<string>();
  const kept = parts.filter((p) => {
    if (stream && p.name === "stream_include_usage") return false;
    if (p.name.endsWith("[]")) return true;
    if (seen.has(p.name)) return false;
    seen.add(p.name);
    return true;
  });
  // The gateway always learns a stream's usage: the engine sends its usage chunk (stripped unless asked for).
  if (stream) kept.push({ name: "stream_include_usage", value: "true" });
  return kept;
}

/**
 * Validates a transcription or translation upload (`multipart/form-data`, as the OpenAI clients send
 * it) and prepares what is forwarded. The audio's duration is read from its container
 * (schema/contracts/audio-duration.ts): it prices the request before it runs and is what the usage
 * row bills, so audio whose duration cannot be read is refused rather than served unmetered.
 * The form is encoded again for the node (multipart.ts): exactly the fields validated and priced,
 * in a framing the gateway wrote, so the engine cannot read the upload differently.
 */
export function validateAudio(endpoint: AudioEndpoint, bytes: ArrayBuffer, contentType: string | undefined): ProxyRequest {
  const boundary = boundaryOf(contentType ?? "");
  if (boundary === null) {
    throw new ApiError("unsupported_media_type", `/v1/audio/${endpoint} takes a multipart/form-data upload (fields 'file' and 'model'), as the OpenAI clients send it.`);
  }
  const form = new Fields(parseMultipart(new Uint8Array(bytes), boundary));
  const model = form.get("model");
  if (model === null) throw new ApiError("missing_field", "Missing required parameter: 'model'.", { param: "model" });
  if (typeof model !== "string" || model.trim() === "") throw invalid("model", "'model' must be a non-empty string.");
  const file = form.get("file");
  if (file === null) throw new ApiError("missing_field", "Missing required parameter: 'file' (the audio to transcribe, as a file upload).", { param: "file" });
  if (typeof file === "string" || "value" in file) throw invalid("file", "'file' must be an uploaded file (a multipart part with a filename), not a text field.");
  const audio = file.bytes;
  if (audio.byteLength === 0) throw invalid("file", "'file' is empty.");
  const duration = audioDuration(audio);
  if (!duration || duration.ms === 0) {
    throw invalid("file", "We could not read how long the audio in 'file' is, so it cannot be priced. Send WAV (PCM), FLAC, MP3, Ogg (Vorbis or Opus), M4A/MP4 or WebM audio.");
  }

  const format = form.get("response_format") ?? "json";
  if (typeof format !== "string" || !FORMATS.has(format)) {
    throw invalid("response_format", `'response_format' must be one of json, text, verbose_json, srt or vtt.`);
  }
  const stream = formBoolean(form, "stream");
  if (stream && !STREAMABLE.has(format)) throw invalid("stream", `Streaming is available for response_format json or text, not ${format}.`);
  const clientWantsUsage = formBoolean(form, "stream_include_usage");
  if (!stream && (clientWantsUsage || formBoolean(form, "stream_continuous_usage_stats"))) {
    throw invalid("stream_include_usage", "The stream options ('stream_include_usage', 'stream_continuous_usage_stats') are only allowed when 'stream' is true.");
  }
  optionalNumber(form, "temperature", 0, 1);
  const priority = form.get("priority");
  if (priority !== null && priority !== "0") {
    throw invalid("priority", "'priority' cannot be set by clients: it would reorder other customers' requests on a shared GPU. Remove it.");
  }
  const upstream = encodeMultipart(upstreamParts(form.parts, stream));
  return {
    endpoint,
    model,
    stream,
    clientWantsUsage: stream && clientWantsUsage,
    upstreamBody: upstream.body,
    upstreamContentType: upstream.contentType,
    // Each 30-second chunk is one engine request, bounded by the context (pricing.ts).
    output: { maxTokens: null, limitField: "file", minTokens: 0, ignoreEos: false, prompts: Math.ceil(duration.ms / AUDIO_CHUNK_MS), perPrompt: 1 },
    promptTokensEstimate: 0,
    prefixHash: null,
    audioMs: duration.ms,
  };
}
