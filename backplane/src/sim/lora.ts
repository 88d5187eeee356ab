/**
 * LoRA adapters, as vLLM serves them (vllm/entrypoints/openai/serving_models.py and
 * serve/lora/api_router.py):
 *
 * - Adapters given at start (`--lora name=base`, like vLLM's `--lora-modules`) and loaded at runtime
 *   are listed in `GET /v1/models` after the base models, each card with `parent` = its base, `root` =
 *   its path and `max_model_len: null`.
 * - A request naming an adapter runs like one for its base (same queue, metrics and limits; vLLM's
 *   metrics label it with the base's name) and its response's `model` echoes the adapter.
 * - `POST /v1/load_lora_adapter` `{lora_name, lora_path, load_inplace?}` and
 *   `POST /v1/unload_lora_adapter` `{lora_name, lora_int_id?}` exist only with runtime updating on
 *   (`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, or the `runtimeLora` option); otherwise they are
 *   FastAPI's 404 `{"detail":"Not Found"}`. They answer 200 with a plain string (no content type),
 *   errors in vLLM's error JSON with type `InvalidUserInput` (400) or `NotFoundError` (404).
 *
 * A runtime-loaded adapter's parent is the first generate model: vLLM falls back to its one base
 * model (`base_model_paths[0]`), and the simulator's first generator plays that part. The path is
 * not read: any non-empty `lora_path` loads.
 */
import type { ServerResponse } from "node:http";
import type { EngineState } from "./engine.ts";
import { SimHttpError, validationError, type ValidationIssue } from "./errors.ts";
import type { ModelMetrics } from "./metrics.ts";
import type { SimOptions } from "./options.ts";

/** A LoRA adapter the engine serves: its name, its base model and where it was loaded from. */
export interface SimLora {
  name: string;
  base: string;
  path: string;
}

/** Where `--lora name=base` says the adapter lives (the card's `root`). */
export function defaultLoraPath(name: string): string {
  return `/adapters/${name}`;
}

/** Parses `--lora <name>=<base>`; null when the spec has no name or base. */
export function parseLoraSpec(spec: string): SimLora | null {
  const eq = spec.indexOf("=");
  const name = spec.slice(0, eq).trim();
  const base = spec.slice(eq + 1).trim();
  if (eq <= 0 || name === "" || base === "" || /\s/.test(name)) return null;
  return { name, base, path: defaultLoraPath(name) };
}

/** What is wrong with the options' adapters (unique names, not a model's, over a generate model), or null. */
export function loraProblem(options: Pick<SimOptions, "models" | "loras">): string | null {
  const seen = new Set<string>();
  for (const lora of options.loras) {
    if (seen.has(lora.name)) return `adapter names must be unique ('${lora.name}' twice)`;
    seen.add(lora.name);
    if (options.models.some((m) => m.name === lora.name)) return `adapter '${lora.name}' has the name of a served model`;
    const base = options.models.find((m) => m.name === lora.base);
    if (!base) return `adapter '${lora.name}': base '${lora.base}' is not a served model`;
    if (base.kind !== "generate") return `adapter '${lora.name}': base '${lora.base}' is not a generate model`;
  }
  return null;
}

/** The adapters served at start, by name. */
export function initialLoras(options: Pick<SimOptions, "loras">): Map<string, SimLora> {
  return new Map(options.loras.map((l) => [l.name, { ...l }]));
}

/** The base model's metrics for a request naming adapter `name`, or undefined when no adapter has that name. */
export function loraBase(state: EngineState, name: string): ModelMetrics | undefined {
  const lora = state.loras.get(name);
  return lora === undefined ? undefined : state.metrics.get(lora.base);
}

/** A model or adapter by name: a model's own metrics, an adapter's base's. */
export function lookupModel(state: EngineState, name: string): ModelMetrics | undefined {
  return state.metrics.get(name) ?? loraBase(state, name);
}

/** The `model` a response names: the adapter the request named (vLLM's `model_name(lora_request)`), else the model. */
export function servedName(state: EngineState, requested: string | null, metrics: ModelMetrics): string {
  return requested !== null && state.loras.has(requested) ? requested : metrics.model.name;
}

/** The `/v1/models` facts of each adapter, in load order (vLLM lists them after the base models). */
export function loraCards(state: EngineState): { id: string; root: string; parent: string }[] {
  return [...state.loras.values()].map((l) => ({ id: l.name, root: l.path, parent: l.base }));
}

/** vLLM's plain-text 200: a Starlette Response with no media type, so no content-type header. */
function sendText(res: ServerResponse, text: string): void {
  res.writeHead(200, { "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** `create_error_response(message, err_type="InvalidUserInput", 400)`. */
function invalidInput(message: string): SimHttpError {
  return new SimHttpError(400, "InvalidUserInput", message);
}

/** Pydantic's checks of a request model with string fields (and the bool/int extras), as FastAPI reports them. */
function checkFields(body: unknown, required: readonly string[], optional: Record<string, "bool" | "int">): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw validationError([{ type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from" }]);
  }
  const fields = body as Record<string, unknown>;
  const issues: ValidationIssue[] = [];
  for (const name of required) {
    if (!(name in fields)) issues.push({ type: "missing", loc: ["body", name], msg: "Field required" });
    else if (typeof fields[name] !== "string") issues.push({ type: "string_type", loc: ["body", name], msg: "Input should be a valid string" });
  }
  for (const [name, kind] of Object.entries(optional)) {
    const value = fields[name];
    if (value === undefined || value === null) continue;
    if (kind === "bool" && typeof value !== "boolean") issues.push({ type: "bool_type", loc: ["body", name], msg: "Input should be a valid boolean" });
    if (kind === "int" && !Number.isInteger(value)) issues.push({ type: "int_type", loc: ["body", name], msg: "Input should be a valid integer" });
  }
  if (issues.length > 0) throw validationError(issues);
  return fields;
}

/** POST /v1/load_lora_adapter. */
function load(state: EngineState, body: unknown, res: ServerResponse): void {
  const fields = checkFields(body, ["lora_name", "lora_path"], { load_inplace: "bool" });
  const name = fields.lora_name as string;
  const path = fields.lora_path as string;
  if (name === "" || path === "") throw invalidInput("Both 'lora_name' and 'lora_path' must be provided.");
  const existing = state.loras.get(name);
  if (existing && fields.load_inplace !== true) {
    throw invalidInput(`The lora adapter '${name}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.`);
  }
  const base = existing?.base ?? [...state.metrics.values()].find((m) => m.model.kind === "generate")?.model.name;
  if (base === undefined) throw new SimHttpError(400, "BadRequestError", "LoRA is not enabled: no generate model to apply the adapter to.");
  state.loras.set(name, { name, base, path });
  sendText(res, `Success: LoRA adapter '${name}' added successfully.`);
}

/** POST /v1/unload_lora_adapter. */
function unload(state: EngineState, body: unknown, res: ServerResponse): void {
  const fields = checkFields(body, ["lora_name"], { lora_int_id: "int" });
  const name = fields.lora_name as string;
  if (name === "") throw invalidInput("'lora_name' needs to be provided to unload a LoRA adapter.");
  if (!state.loras.delete(name)) throw new SimHttpError(404, "NotFoundError", `The lora adapter '${name}' cannot be found.`);
  sendText(res, `Success: LoRA adapter '${name}' removed successfully.`);
}

/** The runtime LoRA route for `path`, when runtime updating is on (undefined otherwise, which is FastAPI's 404). */
export function loraRoute(state: EngineState, path: string): ((state: EngineState, body: unknown, res: ServerResponse) => void) | undefined {
  if (!state.options.runtimeLora) return undefined;
  if (path === "/v1/load_lora_adapter") return load;
  if (path === "/v1/unload_lora_adapter") return unload;
  return undefined;
}

/** vLLM's `VLLM_ALLOW_RUNTIME_LORA_UPDATING` reading: "1" or "true" (any case, trimmed) turns it on. */
export function runtimeLoraFromEnv(value: string | undefined): boolean {
  return ["1", "true"].includes((value ?? "0").trim().toLowerCase());
}
