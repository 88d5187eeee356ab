import { httpException, validationError, type ValidationIssue } from "./errors.ts";
import { DEFAULT_FAULT_AFTER, type SimFault } from "./requests.ts";
import { modelValidatorError } from "./schemas.ts";

/**
 * The form of `POST /v1/audio/transcriptions` and `/v1/audio/translations` as vLLM reads it:
 * FastAPI parses the body into Starlette's FormData and validates `Annotated[TranscriptionRequest,
 * Form()]` (protocol.py TranscriptionRequest / TranslationRequest). Form values are strings, so
 * pydantic's lax coercions apply ("true" is a bool, "0.5" a float), and the "before" model
 * validator sees the raw strings (see `checkStreamOptions`).
 */

/** Which speech-to-text task a route runs (vLLM's `task_type`). */
export type AudioTask = "transcribe" | "translate";

/** `AudioResponseFormat`. */
export type AudioResponseFormat = "json" | "text" | "srt" | "verbose_json" | "vtt";
const RESPONSE_FORMATS: readonly AudioResponseFormat[] = ["json", "text", "srt", "verbose_json", "vtt"];

/** A validated speech-to-text form, reduced to what the simulated engine acts on. */
export interface AudioRequest {
  audio: Uint8Array;
  model: string | null;
  language: string | null;
  prompt: string;
  responseFormat: AudioResponseFormat;
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
  temperature: number;
  fault: SimFault | null;
  faultAfter: number;
  ttftMs: number | null;
}

/** A form value: a string, or an upload (a File). */
type FormValue = NonNullable<ReturnType<FormData["get"]>>;

type FieldType = "str" | "bool" | "float" | "int" | "format" | "granularities";

/** Validated fields in declaration order (pydantic reports errors in this order). */
const TRANSCRIPTION_FIELDS: readonly [string, FieldType][] = [
  ["model", "str"],
  ["language", "str"],
  ["prompt", "str"],
  ["response_format", "format"],
  ["timestamp_granularities[]", "granularities"],
  ["stream", "bool"],
  ["stream_include_usage", "bool"],
  ["stream_continuous_usage_stats", "bool"],
  ["to_language", "str"],
  ["temperature", "float"],
  ["top_p", "float"],
  ["top_k", "int"],
  ["min_p", "float"],
  ["seed", "int"],
  ["frequency_penalty", "float"],
  ["repetition_penalty", "float"],
  ["presence_penalty", "float"],
];

/** TranslationRequest has fewer fields; the others are extras, accepted unchecked. */
const TRANSLATION_FIELDS: readonly [string, FieldType][] = [
  ["model", "str"],
  ["prompt", "str"],
  ["response_format", "format"],
  ["seed", "int"],
  ["temperature", "float"],
  ["language", "str"],
  ["to_language", "str"],
  ["stream", "bool"],
  ["stream_include_usage", "bool"],
  ["stream_continuous_usage_stats", "bool"],
];

const FAULTS: readonly SimFault[] = ["error_mid_stream", "drop_mid_stream", "engine_error"];
const STREAM_OPTIONS = ["stream_include_usage", "stream_continuous_usage_stats"] as const;
const TRUE_WORDS = new Set(["1", "on", "t", "true", "y", "yes"]);
const FALSE_WORDS = new Set(["0", "off", "f", "false", "n", "no"]);
const FLOAT = /^[+-]?(\d+(_\d+)*\.?(\d+(_\d+)*)?|\.\d+)([eE][+-]?\d+)?$/;
const INT = /^[+-]?\d+$/;
const LONG_MIN = -(2n ** 63n);
const LONG_MAX = 2n ** 63n - 1n;

/**
 * The body as Starlette's `Request.form()` reads it: multipart and url-encoded bodies are parsed
 * (with Node's own parser), any other content type gives an empty form, as Starlette does. A body
 * that does not parse is FastAPI's `HTTPException(400, "There was an error parsing the body")`.
 */
export async function readForm(contentType: string | undefined, raw: Buffer): Promise<FormData> {
  const media = (contentType ?? "").split(";", 1)[0]?.trim().toLowerCase();
  if (media !== "multipart/form-data" && media !== "application/x-www-form-urlencoded") return new FormData();
  try {
    return await new Response(raw, { headers: { "content-type": contentType ?? "" } }).formData();
  } catch {
    throw httpException(400, "There was an error parsing the body");
  }
}

/**
 * One field's value as FastAPI's `_get_multidict_value` hands it to pydantic: Starlette's
 * `FormData.get` returns the last value of a repeated name; an empty string counts as absent.
 */
function lastValue(form: FormData, name: string): FormValue | undefined {
  const value = form.getAll(name).at(-1);
  return value === "" ? undefined : value;
}

function typeIssue(name: string, type: string, msg: string, index?: number): ValidationIssue {
  return { type, loc: index === undefined ? ["body", name] : ["body", name, index], msg };
}

const FORMAT_ISSUE = "Input should be 'json', 'text', 'srt', 'verbose_json' or 'vtt'";

/** What pydantic says of an upload given for a field that is not a file. */
const NOT_A_STRING: Record<Exclude<FieldType, "granularities">, [string, string]> = {
  str: ["string_type", "Input should be a valid string"],
  bool: ["bool_type", "Input should be a valid boolean"],
  float: ["float_type", "Input should be a valid number"],
  int: ["int_type", "Input should be a valid integer"],
  format: ["literal_error", FORMAT_ISSUE],
};

/** Pydantic's lax reading of one form value, or the issue when it does not fit. */
function coerce(name: string, type: Exclude<FieldType, "granularities">, value: FormValue): unknown {
  if (typeof value !== "string") return typeIssue(name, ...NOT_A_STRING[type]);
  switch (type) {
    case "str":
      return value;
    case "format":
      return RESPONSE_FORMATS.includes(value as AudioResponseFormat) ? value : typeIssue(name, "literal_error", FORMAT_ISSUE);
    case "bool": {
      const word = value.toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      return typeIssue(name, "bool_parsing", "Input should be a valid boolean, unable to interpret input");
    }
    case "float": {
      const text = value.trim();
      if (FLOAT.test(text)) return Number(text.replaceAll("_", ""));
      if (/^[+-]?(inf|infinity)$/i.test(text)) return text.startsWith("-") ? -Infinity : Infinity;
      if (/^[+-]?nan$/i.test(text)) return NaN;
      return typeIssue(name, "float_parsing", "Input should be a valid number, unable to parse string as a number");
    }
    case "int": {
      const text = value.trim();
      if (!INT.test(text)) return typeIssue(name, "int_parsing", "Input should be a valid integer, unable to parse string as an integer");
      // TranscriptionRequest.seed: Field(None, ge=torch.long min, le=torch.long max).
      if (name === "seed" && BigInt(text) < LONG_MIN) return typeIssue(name, "greater_than_equal", `Input should be greater than or equal to ${LONG_MIN}`);
      if (name === "seed" && BigInt(text) > LONG_MAX) return typeIssue(name, "less_than_equal", `Input should be less than or equal to ${LONG_MAX}`);
      return Number(text);
    }
  }
}

function isIssue(value: unknown): value is ValidationIssue {
  return typeof value === "object" && value !== null && "loc" in value && "msg" in value;
}

/**
 * protocol.py `validate_transcription_request` / `validate_stream_options`, a "before" validator:
 * it sees FastAPI's raw values, so `bool(data.get(...))` is Python truthiness of a string. Any
 * non-empty value, "false" included, counts as set, and `stream` counts as given whenever it is
 * sent non-empty ("false" too); only a missing or empty `stream` is the default False.
 */
function checkBeforeValidators(form: FormData): void {
  // In vLLM only TranscriptionRequest checked this at first; later versions check both requests.
  if (typeof form.getAll("file").at(-1) === "string") throw httpException(422, "Expected 'file' to be a file-like object, not 'str'.");
  const set = (name: string) => lastValue(form, name) !== undefined;
  if (STREAM_OPTIONS.some(set) && !set("stream")) throw modelValidatorError("Stream options can only be defined when `stream=True`.");
}

function simFields(form: FormData, issues: ValidationIssue[]): Pick<AudioRequest, "fault" | "faultAfter" | "ttftMs"> {
  const fault = lastValue(form, "sim_fault");
  const after = lastValue(form, "sim_fault_after");
  const ttft = lastValue(form, "sim_ttft_ms");
  const out: Pick<AudioRequest, "fault" | "faultAfter" | "ttftMs"> = { fault: null, faultAfter: DEFAULT_FAULT_AFTER, ttftMs: null };
  if (fault !== undefined) {
    if (FAULTS.includes(fault as SimFault)) out.fault = fault as SimFault;
    else issues.push(typeIssue("sim_fault", "literal_error", "Input should be 'error_mid_stream', 'drop_mid_stream' or 'engine_error'"));
  }
  if (after !== undefined) {
    const value = coerce("sim_fault_after", "int", after);
    if (isIssue(value)) issues.push(value);
    else if ((value as number) < 0) issues.push(typeIssue("sim_fault_after", "greater_than_equal", "Input should be greater than or equal to 0"));
    else out.faultAfter = value as number;
  }
  if (ttft !== undefined) {
    const value = coerce("sim_ttft_ms", "float", ttft);
    if (isIssue(value)) issues.push(value);
    else if (!((value as number) >= 0)) issues.push(typeIssue("sim_ttft_ms", "greater_than_equal", "Input should be greater than or equal to 0"));
    else out.ttftMs = value as number;
  }
  return out;
}

/** Validates the form of a speech-to-text route and reads the upload; throws vLLM's 422 or 400 errors. */
export async function parseAudioForm(task: AudioTask, form: FormData): Promise<AudioRequest> {
  checkBeforeValidators(form);
  const issues: ValidationIssue[] = [];
  const file = form.getAll("file").at(-1);
  if (file === undefined) issues.push({ type: "missing", loc: ["body", "file"], msg: "Field required" });
  const values = new Map<string, unknown>();
  for (const [name, type] of task === "transcribe" ? TRANSCRIPTION_FIELDS : TRANSLATION_FIELDS) {
    if (type === "granularities") {
      form.getAll(name).forEach((item, index) => {
        if (item !== "word" && item !== "segment") issues.push(typeIssue(name, "literal_error", "Input should be 'word' or 'segment'", index));
      });
      continue;
    }
    const raw = lastValue(form, name);
    if (raw === undefined) continue;
    const value = coerce(name, type, raw);
    if (isIssue(value)) issues.push(value);
    else values.set(name, value);
  }
  const sim = simFields(form, issues);
  if (issues.length > 0 || !(file instanceof Blob)) throw validationError(issues);
  const stream = values.get("stream") === true;
  const includeUsage = stream && values.get("stream_include_usage") === true;
  return {
    audio: new Uint8Array(await file.arrayBuffer()),
    model: (values.get("model") as string | undefined) ?? null,
    language: (values.get("language") as string | undefined) ?? null,
    prompt: (values.get("prompt") as string | undefined) ?? "",
    responseFormat: (values.get("response_format") as AudioResponseFormat | undefined) ?? "json",
    stream,
    includeUsage,
    // speech_to_text.py: continuous usage only with include_usage.
    continuousUsage: includeUsage && values.get("stream_continuous_usage_stats") === true,
    temperature: (values.get("temperature") as number | undefined) ?? 0,
    ...sim,
  };
}
