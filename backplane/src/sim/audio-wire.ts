import type { AudioTask } from "./audio-request.ts";
import { pyFloat } from "./metrics.ts";
import { textTokens } from "./token-ids.ts";

/**
 * vLLM's speech-to-text bodies, byte for byte (speech_to_text.py, protocol.py). Stream chunks are
 * `model_dump_json(exclude_unset=True)`, so a token's choice is only `{"delta":{"content":…}}` and
 * only an engine request's last output sets `finish_reason` and `stop_reason`; the usage chunk is
 * also `exclude_none`. Non-stream bodies are `model_dump()` through a JSONResponse (nulls kept).
 */

/** Identity shared by every chunk of one stream. */
export interface AudioHead {
  task: AudioTask;
  /** `{task_type}-{X-Request-Id or random hex}`: vLLM passes its request id as the chunk id. */
  id: string;
  created: number;
  model: string;
}

/** Running or final token counts of a stream (summed over its engine requests). */
export interface AudioUsage {
  prompt: number;
  completion: number;
}

/** One 30-s piece of the audio as the finished engine request transcribed it. */
export interface AudioSegment {
  index: number;
  /** Start and length of the piece, in seconds. */
  start: number;
  seconds: number;
  text: string;
}

function usageJson(usage: AudioUsage): string {
  // UsageInfo's declaration order, with only the three fields vLLM sets.
  return `{"prompt_tokens":${usage.prompt},"total_tokens":${usage.prompt + usage.completion},"completion_tokens":${usage.completion}}`;
}

function prefix(head: AudioHead): string {
  const object = head.task === "transcribe" ? "transcription.chunk" : "translation.chunk";
  return `data: {"id":${JSON.stringify(head.id)},"object":"${object}","created":${head.created},"model":${JSON.stringify(head.model)}`;
}

/** One engine output (a token) as a stream chunk; `usage` only with continuous usage stats. */
export function audioChunk(head: AudioHead, text: string, finish: string | null, usage: AudioUsage | null): string {
  const end = finish === null ? "" : `,"finish_reason":${JSON.stringify(finish)},"stop_reason":null`;
  const tail = usage === null ? "" : `,"usage":${usageJson(usage)}`;
  return `${prefix(head)},"choices":[{"delta":{"content":${JSON.stringify(text)}}${end}}]${tail}}\n\n`;
}

/** The usage-only chunk sent after the last engine request, with `stream_include_usage`. */
export function audioUsageChunk(head: AudioHead, usage: AudioUsage): string {
  return `${prefix(head)},"choices":[],"usage":${usageJson(usage)}}\n\n`;
}

/**
 * The non-stream body for `json` and `text`: vLLM answers both with the JSON model. A transcription
 * carries `usage` in the audio's whole seconds, rounded up (newer vLLM); a translation never does.
 */
export function audioTextBody(task: AudioTask, text: string, durationS: number): string {
  if (task === "translate") return JSON.stringify({ text });
  return `{"text":${JSON.stringify(text)},"usage":{"type":"duration","seconds":${Math.ceil(durationS)}}}`;
}

/**
 * The `verbose_json` body (TranscriptionResponseVerbose / TranslationResponseVerbose): `duration` is
 * Python's `str()` of the float, one segment per 30-s piece (vLLM's `_get_verbose_segments` fields,
 * the unsupported ones null), and `words` is always null: vLLM ignores `timestamp_granularities`.
 */
export function audioVerboseBody(durationS: number, language: string, text: string, segments: readonly AudioSegment[], temperature: number): string {
  const items = segments.map((s) => {
    // Whisper's timestamp tokens step by 0.02 s.
    const end = Math.round((s.start + s.seconds) * 50) / 50;
    const tokens = textTokens(s.text).map((t) => t.id);
    return (
      `{"id":${s.index},"avg_logprob":null,"compression_ratio":null,"end":${pyFloat(end)},"no_speech_prob":null,"seek":${s.start},` +
      `"start":${pyFloat(s.start)},"temperature":${pyFloat(temperature)},"text":${JSON.stringify(s.text)},"tokens":${JSON.stringify(tokens)}}`
    );
  });
  return `{"duration":${JSON.stringify(pyFloat(durationS))},"language":${JSON.stringify(language)},"text":${JSON.stringify(text)},"segments":[${items.join(",")}],"words":null}`;
}
