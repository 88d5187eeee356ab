import { z } from "zod";
import { type ValidationIssue, validationError, type SimHttpError } from "./errors.ts";

/**
 * Request bodies of the three POST endpoints, as vLLM's pydantic models accept them.
 * Unknown fields are dropped (vLLM accepts and only logs them). Only the fields the
 * simulator acts on are typed; the rest of vLLM's sampling extras pass as unknown fields.
 */

const int = z.number().int();
const message = z.object({
  role: z.string(),
  content: z.union([z.string(), z.array(z.unknown()), z.null()]).optional(),
  name: z.string().nullish(),
  tool_calls: z.array(z.unknown()).nullish(),
});

/** Simulator-only knobs, invisible to clients that do not send them. */
const faults = {
  sim_fault: z.enum(["error_mid_stream", "drop_mid_stream", "engine_error"]).nullish(),
  sim_fault_after: int.min(0).nullish(),
  sim_ttft_ms: z.number().min(0).nullish(),
};

const sampling = {
  model: z.string().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() }).nullish(),
  n: int.nullish(),
  best_of: int.nullish(),
  seed: int.nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  top_k: int.nullish(),
  frequency_penalty: z.number().nullish(),
  presence_penalty: z.number().nullish(),
  stop: z.union([z.string(), z.array(z.string())]).nullish(),
  ignore_eos: z.boolean().nullish(),
  min_tokens: int.nullish(),
  max_tokens: int.nullish(),
  request_id: z.string().nullish(),
  // vLLM's scheduling priority (lower runs earlier; --scheduling-policy priority).
  priority: int.nullish(),
  ...faults,
};

const dict = z.record(z.string(), z.unknown());

/** ChatCompletionToolsParam: a function tool. */
const tool = z.object({
  type: z.literal("function").optional(),
  function: z.object({ name: z.string(), description: z.string().nullish(), parameters: dict.nullish() }),
});

/** ResponseFormat | StructuralTagResponseFormat. */
const responseFormat = z.union([
  z.object({
    type: z.enum(["text", "json_object", "json_schema"]),
    json_schema: z.object({ name: z.string(), description: z.string().nullish(), schema: dict.nullish(), strict: z.boolean().nullish() }).nullish(),
  }),
  z.object({ type: z.literal("structural_tag"), structures: z.array(z.unknown()), triggers: z.array(z.string()) }),
]);

export const chatSchema = z.object({
  ...sampling,
  messages: z.array(message),
  max_completion_tokens: int.nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: z
    .union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function").optional(), function: z.object({ name: z.string() }) })])
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  response_format: responseFormat.nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: int.nullish(),
  include_reasoning: z.boolean().nullish(),
});

export const completionSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()), z.array(int), z.array(z.array(int))]).nullish(),
  logprobs: int.nullish(),
});

export const embeddingSchema = z.object({
  model: z.string().nullish(),
  input: z.union([z.string(), z.array(z.string()), z.array(int), z.array(z.array(int))]).optional(),
  messages: z.array(message).optional(),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  dimensions: int.nullish(),
  truncate_prompt_tokens: int.min(-1).nullish(),
  normalize: z.boolean().nullish(),
  priority: int.nullish(),
  ...faults,
});

export type ChatBody = z.infer<typeof chatSchema>;
export type CompletionBody = z.infer<typeof completionSchema>;
export type EmbeddingBody = z.infer<typeof embeddingSchema>;

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let value = body;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

const TYPE_NAMES: Record<string, [string, string]> = {
  number: ["float_type", "Input should be a valid number"],
  int: ["int_type", "Input should be a valid integer"],
  boolean: ["bool_type", "Input should be a valid boolean"],
  string: ["string_type", "Input should be a valid string"],
  array: ["list_type", "Input should be a valid list"],
  object: ["dict_type", "Input should be a valid dictionary"],
};

/** Translates zod issues into pydantic's vocabulary (type, loc, msg), which vLLM reports. */
function toIssues(error: z.ZodError, body: unknown): ValidationIssue[] {
  return error.issues.map((issue) => {
    const loc: (string | number)[] = ["body", ...issue.path.map((p) => (typeof p === "number" ? p : String(p)))];
    if (valueAt(body, issue.path) === undefined) return { type: "missing", loc, msg: "Field required" };
    switch (issue.code) {
      case "invalid_type": {
        const [type, msg] = TYPE_NAMES[issue.expected] ?? [`${issue.expected}_type`, `Input should be a valid ${issue.expected}`];
        return { type, loc, msg };
      }
      case "invalid_value": {
        const options = issue.values.map((v) => `'${String(v)}'`);
        const list = options.length > 1 ? `${options.slice(0, -1).join(", ")} or ${options.at(-1)}` : (options[0] ?? "");
        return { type: "literal_error", loc, msg: `Input should be ${list}` };
      }
      case "too_small":
        return { type: "greater_than_equal", loc, msg: `Input should be greater than or equal to ${String(issue.minimum)}` };
      case "too_big":
        return { type: "less_than_equal", loc, msg: `Input should be less than or equal to ${String(issue.maximum)}` };
      case "invalid_union":
        return { type: "union_type", loc, msg: "Input does not match any of the allowed types" };
      default:
        return { type: "value_error", loc, msg: issue.message };
    }
  });
}

/** A pydantic "before" model-validator failure (ValueError), reported against the whole body. */
export function modelValidatorError(message: string): SimHttpError {
  return validationError([{ type: "value_error", loc: ["body"], msg: `Value error, ${message}` }]);
}

/** Python truthiness of a JSON value, as vLLM's `data.get(...)` checks use it. */
export function truthy(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (value !== null && typeof value === "object") return Object.keys(value).length > 0;
  return Boolean(value);
}

/** Validates a JSON body against a schema; throws vLLM's 400 "Bad Request" on failure. */
export function validateBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw validationError([
      { type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from" },
    ]);
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw validationError(toIssues(parsed.error, body));
  return parsed.data;
}
