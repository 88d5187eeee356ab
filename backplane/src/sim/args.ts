import { parseShape } from "../fedattn/kv.ts";
import { parseLoraSpec, runtimeLoraFromEnv, type SimLora } from "./lora.ts";
import { loadSimScript, type SimScriptEntry } from "./script.ts";
import { DEFAULT_MAX_MODEL_LEN, type SchedulingPolicy, type SimModel, type SimOptions, SimOptionsError, simOptions } from "./options.ts";

/** `--help` text of `backplane sim` / `node backplane/src/sim/cli.ts`. */
export const SIM_HELP = `Simulated vLLM engine: vLLM's OpenAI-compatible server (v0.10-0.11 wire formats) without a GPU.

Usage: backplane sim [flags]

Flags (environment fallback in brackets):
  --host <addr>                 listen address (default 127.0.0.1) [SIM_HOST]
  --port <n>                    listen port, 0 = any free port (default 0) [SIM_PORT]
  --model <name[:generate|:embed|:transcribe][:maxlen][:vision][:reasoning]>
                                served model, repeatable; replaces the defaults
                                (default sim-llama-8b:generate:8192 and sim-embed:embed:512);
                                :transcribe is a Whisper-like speech-to-text model (default
                                maxlen 448) serving only /v1/audio/transcriptions and /translations;
                                :vision accepts images, :reasoning answers with reasoning_content
                                [SIM_MODELS, comma-separated]
  --ttft-ms <ms>                time to first token (default 20) [SIM_TTFT_MS]
  --prefill-ms-per-token <ms>   added to the time to first token per prompt token missing from the
                                prefix cache (default 0) [SIM_PREFILL_MS_PER_TOKEN]
  --inter-token-ms <ms>         delay between tokens (default 5) [SIM_INTER_TOKEN_MS]
  --embed-ms <ms>               time an embeddings request takes, per batch (default 0) [SIM_EMBED_MS]
  --output-tokens <n>           tokens generated before EOS when nothing cuts it first (default 32) [SIM_OUTPUT_TOKENS]
  --max-concurrency <n>         requests generating at once; the rest queue (default 16) [SIM_MAX_CONCURRENCY]
  --scheduling-policy <p>       fcfs (default): waiting requests run in arrival order and a non-zero
                                "priority" is a 400; priority: they run by (priority, arrival), lower
                                first, as vLLM's --scheduling-policy [SIM_SCHEDULING_POLICY]
  --seed <n>                    default sampling seed (default 0) [SIM_SEED]
  --embedding-dimensions <n>    embedding vector size (default 384) [SIM_EMBEDDING_DIMENSIONS]
  --api-key <key>               require Authorization: Bearer <key> on /v1/* [SIM_API_KEY, VLLM_API_KEY]
  --lora <name>=<base>          serve LoRA adapter <name> of the generate model <base>, repeatable
                                (like vLLM's --lora-modules; listed in /v1/models with parent <base>)
  --runtime-lora                register POST /v1/load_lora_adapter and /v1/unload_lora_adapter
                                [VLLM_ALLOW_RUNTIME_LORA_UPDATING=True or 1, as vLLM reads it]
  --script <file>               scripted chat answers, for tests: a JSON array of
                                {"system", "user"?, "answer"}; a chat request whose system prompt and
                                last user message contain those substrings gets "answer" as its text
                                (first match wins) [SIM_SCRIPT]
  --fedattn-shape <dims>        dims of one block's K and V on POST /switchyard/fedattn/kv, e.g.
                                16x64 (1 to 3 dims; the tensor is [blocks, ...dims]; default 16x64)
                                [SIM_FEDATTN_SHAPE]
  -h, --help                    show this text

Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/audio/transcriptions,
/v1/audio/translations; GET /v1/models, /health, /ping, /version, /metrics. Switchyard's own
federated-attention routes (not vLLM's): POST /switchyard/fedattn/kv, /switchyard/fedattn/apply,
GET /switchyard/fedattn/applied (docs/fedattn.md). Fault injection and details: docs/simulator.md.
`;

type Env = Readonly<Record<string, string | undefined>>;

/** Numeric flags: flag name, option key, env var, whether it must be an integer. */
const NUMERIC_FLAGS = [
  ["--port", "port", "SIM_PORT", true],
  ["--ttft-ms", "ttftMs", "SIM_TTFT_MS", false],
  ["--prefill-ms-per-token", "prefillMsPerToken", "SIM_PREFILL_MS_PER_TOKEN", false],
  ["--inter-token-ms", "interTokenMs", "SIM_INTER_TOKEN_MS", false],
  ["--embed-ms", "embedMs", "SIM_EMBED_MS", false],
  ["--output-tokens", "outputTokens", "SIM_OUTPUT_TOKENS", true],
  ["--max-concurrency", "maxConcurrency", "SIM_MAX_CONCURRENCY", true],
  ["--seed", "seed", "SIM_SEED", true],
  ["--embedding-dimensions", "embeddingDimensions", "SIM_EMBEDDING_DIMENSIONS", true],
] as const;

type NumericKey = (typeof NUMERIC_FLAGS)[number][1];

/** True when argv asks for the help text. */
export function isHelpRequest(argv: readonly string[]): boolean {
  return argv.includes("--help") || argv.includes("-h");
}

function parseNumber(flag: string, raw: string, integer: boolean): number {
  const ok = integer ? /^-?\d+$/.test(raw.trim()) : /^\d+(\.\d+)?$/.test(raw.trim());
  if (!ok) throw new SimOptionsError(`${flag}: expected ${integer ? "an integer" : "a non-negative number"}, got "${raw}"`);
  return Number(raw);
}

/** Model capability flags a spec may end with. */
const MODEL_FLAGS = ["vision", "reasoning"] as const;

/**
 * Parses `name[:generate|:embed|:transcribe][:maxlen][:vision][:reasoning]`, read from the right so names may
 * contain ':'. The flags come last, in any order.
 */
export function parseModelSpec(spec: string, flag = "--model"): SimModel {
  const parts = spec.split(":");
  const flags = new Set<string>();
  for (let last = parts.at(-1); parts.length > 1 && last !== undefined; last = parts.at(-1)) {
    const known = MODEL_FLAGS.find((f) => f === last);
    if (known === undefined || flags.has(known)) break;
    flags.add(known);
    parts.pop();
  }
  let maxModelLen: number | undefined;
  let kind: SimModel["kind"] = "generate";
  const last = parts.at(-1);
  if (parts.length > 1 && last !== undefined && /^\d+$/.test(last)) {
    maxModelLen = Number(last);
    parts.pop();
  }
  const kindPart = parts.at(-1);
  if (parts.length > 1 && (kindPart === "generate" || kindPart === "embed" || kindPart === "transcribe")) {
    kind = kindPart;
    parts.pop();
  }
  const name = parts.join(":");
  if (!/^\S+$/.test(name)) throw new SimOptionsError(`${flag}: expected name[:generate|:embed|:transcribe][:maxlen][:vision][:reasoning], got "${spec}"`);
  if (kind !== "generate" && flags.size > 0) throw new SimOptionsError(`${flag}: vision and reasoning apply to generate models only, got "${spec}"`);
  const model: SimModel = { name, kind, maxModelLen: maxModelLen ?? DEFAULT_MAX_MODEL_LEN[kind] };
  if (flags.has("vision")) model.vision = true;
  if (flags.has("reasoning")) model.reasoning = true;
  return model;
}

function shapeOption(flag: string, value: string): number[] {
  const dims = parseShape(value);
  if (dims === null || dims.length > 3) throw new SimOptionsError(`${flag}: expected 1 to 3 dims like 16x64, got "${value}"`);
  return dims;
}

function badLora(spec: string): never {
  throw new SimOptionsError(`--lora: expected <name>=<base model>, got "${spec}"`);
}

/** The entries of a script file; a missing or invalid file is an error naming the flag (or env var). */
function scriptFile(flag: string, file: string): SimScriptEntry[] {
  try {
    return loadSimScript(file);
  } catch (error) {
    throw new SimOptionsError(`${flag}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/** `--scheduling-policy`: vLLM's fcfs or priority. */
function policyOption(flag: string, value: string): SchedulingPolicy {
  if (value === "fcfs" || value === "priority") return value;
  throw new SimOptionsError(`${flag}: expected fcfs or priority, got "${value}"`);
}

/** Parses `backplane sim` flags; flags win over env, env over defaults. Throws an Error naming the bad flag. */
export function parseSimArgs(argv: readonly string[], env: Env = process.env): SimOptions {
  const partial: Partial<SimOptions> = {};
  const numeric: Partial<Record<NumericKey, number>> = {};
  const models: SimModel[] = [];
  const loras: SimLora[] = [];

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (!arg.startsWith("-")) throw new SimOptionsError(`Unexpected argument "${arg}" (see --help)`);
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    if (flag === "--help" || flag === "-h") continue;
    if (flag === "--runtime-lora" && value === undefined) {
      partial.runtimeLora = true;
      continue;
    }
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined || (value.startsWith("--") && value.length > 2)) throw new SimOptionsError(`${flag}: missing value`);
      i++;
    }
    const spec = NUMERIC_FLAGS.find(([name]) => name === flag);
    if (spec) numeric[spec[1]] = parseNumber(flag, value, spec[3]);
    else if (flag === "--model") models.push(parseModelSpec(value));
    else if (flag === "--host") partial.host = value;
    else if (flag === "--api-key") partial.apiKey = value;
    else if (flag === "--lora") loras.push(parseLoraSpec(value) ?? badLora(value));
    else if (flag === "--script") partial.script = scriptFile(flag, value);
    else if (flag === "--fedattn-shape") partial.fedattnShape = shapeOption(flag, value);
    else if (flag === "--scheduling-policy") partial.schedulingPolicy = policyOption(flag, value);
    else throw new SimOptionsError(`Unknown flag ${flag} (see --help)`);
  }

  for (const [, key, envName, integer] of NUMERIC_FLAGS) {
    const raw = env[envName];
    if (numeric[key] === undefined && raw !== undefined && raw !== "") numeric[key] = parseNumber(envName, raw, integer);
  }
  if (partial.host === undefined && env.SIM_HOST) partial.host = env.SIM_HOST;
  if (partial.apiKey === undefined) {
    const key = env.SIM_API_KEY || env.VLLM_API_KEY;
    if (key) partial.apiKey = key;
  }
  if (partial.fedattnShape === undefined && env.SIM_FEDATTN_SHAPE) partial.fedattnShape = shapeOption("SIM_FEDATTN_SHAPE", env.SIM_FEDATTN_SHAPE);
  if (partial.schedulingPolicy === undefined && env.SIM_SCHEDULING_POLICY) partial.schedulingPolicy = policyOption("SIM_SCHEDULING_POLICY", env.SIM_SCHEDULING_POLICY);
  if (partial.script === undefined && env.SIM_SCRIPT) partial.script = scriptFile("SIM_SCRIPT", env.SIM_SCRIPT);
  if (models.length === 0 && env.SIM_MODELS) {
    for (const spec of env.SIM_MODELS.split(",")) if (spec.trim()) models.push(parseModelSpec(spec.trim(), "SIM_MODELS"));
  }
  if (models.length > 0) partial.models = models;
  if (loras.length > 0) partial.loras = loras;
  partial.runtimeLora ??= runtimeLoraFromEnv(env.VLLM_ALLOW_RUNTIME_LORA_UPDATING);

  try {
    return simOptions({ ...partial, ...numeric });
  } catch (error) {
    // Translate "Invalid simulator option ttftMs" into the flag the user typed.
    if (!(error instanceof SimOptionsError)) throw error;
    const match = NUMERIC_FLAGS.find(([, key]) => error.message.includes(`option ${key}:`));
    if (match) throw new SimOptionsError(error.message.replace(`option ${match[1]}:`, `value for ${match[0]}:`));
    if (error.message.includes("option models")) throw new SimOptionsError(error.message.replace(/option models[.\d\w]*:/, "value for --model:"));
    if (error.message.includes("option host:")) throw new SimOptionsError(error.message.replace("option host:", "value for --host:"));
    if (error.message.includes("option apiKey:")) throw new SimOptionsError(error.message.replace("option apiKey:", "value for --api-key:"));
    if (error.message.includes("option fedattnShape")) throw new SimOptionsError(error.message.replace(/option fedattnShape[.\d\w]*:/, "value for --fedattn-shape:"));
    if (error.message.includes("option loras")) throw new SimOptionsError(error.message.replace(/option loras[.\d\w]*:/, "value for --lora:"));
    throw error;
  }
}
