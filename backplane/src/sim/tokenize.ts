import type { ServerResponse } from "node:http";
import { z } from "zod";
import type { EngineState } from "./engine.ts";
import { badRequest, modelNotFound, sendJson, validationError } from "./errors.ts";
import { lookupModel } from "./lora.ts";
import type { ModelMetrics } from "./metrics.ts";
import { chatSchema, truthy, validateBody } from "./schemas.ts";
import { chatTokens, idText, SPECIAL_TOKENS, type SimToken, textTokens } from "./token-ids.ts";
import { contentImages } from "./tokenizer.ts";

/**
 * vLLM's `POST /tokenize` and `POST /detokenize` (serving_tokenization.py, protocol.py TokenizeRequest,
 * DetokenizeRequest), answered with the simulator's tokenizer and its ids (token-ids.ts). They sit outside
 * /v1, so vLLM never asks for the API key; they use no generation slot and count in no metric.
 */

const int = z.number().int();

/** TokenizeCompletionRequest. */
const completionSchema = z.object({
  model: z.string().nullish(),
  prompt: z.string(),
  add_special_tokens: z.boolean().optional(),
  return_token_strs: z.boolean().nullish(),
});

/** TokenizeChatRequest (chat_template, chat_template_kwargs and mm_processor_kwargs are accepted and ignored). */
const chatTokenizeSchema = z.object({
  model: z.string().nullish(),
  messages: chatSchema.shape.messages,
  add_generation_prompt: z.boolean().optional(),
  return_token_strs: z.boolean().nullish(),
  continue_final_message: z.boolean().optional(),
  add_special_tokens: z.boolean().optional(),
  chat_template: z.string().nullish(),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  tools: chatSchema.shape.tools,
});

/** DetokenizeRequest. */
const detokenizeSchema = z.object({ model: z.string().nullish(), tokens: z.array(int) });

/** The served model a tokenizer request names (any kind, or an adapter); an omitted name is the first model. */
function tokenizerModel(state: EngineState, name: string | null | undefined): ModelMetrics {
  const found = name === null || name === undefined ? state.metrics.values().next().value : lookupModel(state, name);
  if (!found) throw modelNotFound(name ?? "");
  return found;
}

/**
 * The body as `Union[TokenizeCompletionRequest, TokenizeChatRequest]`: a body with `prompt` is the
 * first, one with `messages` the second. Pydantic names the union member in each error's loc; the
 * simulator does so only when both fields are missing, and for the chat member's model validator.
 */
function tokenizeRequest(raw: unknown): { kind: "prompt"; body: z.infer<typeof completionSchema> } | { kind: "chat"; body: z.infer<typeof chatTokenizeSchema> } {
  const object = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? (raw as Record<string, unknown>) : null;
  if (object && !("prompt" in object) && "messages" in object) {
    // protocol.py check_generation_prompt, a "before" validator of the chat member.
    if (truthy(object.continue_final_message) && truthy(object.add_generation_prompt)) {
      throw validationError([
        { type: "missing", loc: ["body", "TokenizeCompletionRequest", "prompt"], msg: "Field required" },
        {
          type: "value_error",
          loc: ["body", "TokenizeChatRequest"],
          msg: "Value error, Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
        },
      ]);
    }
    return { kind: "chat", body: validateBody(chatTokenizeSchema, raw) };
  }
  if (object && !("prompt" in object)) {
    throw validationError([
      { type: "missing", loc: ["body", "TokenizeCompletionRequest", "prompt"], msg: "Field required" },
      { type: "missing", loc: ["body", "TokenizeChatRequest", "messages"], msg: "Field required" },
    ]);
  }
  return { kind: "prompt", body: validateBody(completionSchema, raw) };
}

/** POST /tokenize: `{"count","max_model_len","tokens","token_strs"}` (TokenizeResponse, model_dump order). */
export function handleTokenize(state: EngineState, raw: unknown, res: ServerResponse): void {
  const request = tokenizeRequest(raw);
  const m = tokenizerModel(state, request.body.model);
  let tokens: SimToken[];
  if (request.kind === "prompt") {
    // add_special_tokens defaults to true for a prompt: BOS, as /v1/completions counts it.
    const text = textTokens(request.body.prompt);
    tokens = request.body.add_special_tokens === false ? text : [SPECIAL_TOKENS.bos, ...text];
  } else {
    const { body } = request;
    const images = body.messages.some((message) => contentImages(message.content).length > 0);
    // vLLM reports the chat parser's ValueError as f"{e} {e.__cause__}" (serving_tokenization.py).
    if (images && m.model.vision !== true) throw badRequest(`${m.model.name} is not a multimodal model None`);
    const object = raw as Record<string, unknown>;
    // The template renders `tools` as sent, as for chat (requests.ts).
    tokens = chatTokens(body.messages, Array.isArray(object.tools) ? object.tools : null, {
      addGenerationPrompt: body.add_generation_prompt !== false,
      continueFinalMessage: body.continue_final_message === true,
      addSpecialTokens: body.add_special_tokens === true,
    });
  }
  const response = {
    count: tokens.length,
    max_model_len: m.model.maxModelLen,
    tokens: tokens.map((t) => t.id),
    token_strs: request.body.return_token_strs === true ? tokens.map((t) => t.text) : null,
  };
  sendJson(res, 200, JSON.stringify(response));
}

/**
 * POST /detokenize: `{"prompt"}`, the texts of the ids joined, special tokens included (vLLM decodes
 * with the tokenizer's defaults). An id the simulated vocabulary cannot read is a 400.
 */
export function handleDetokenize(state: EngineState, raw: unknown, res: ServerResponse): void {
  const body = validateBody(detokenizeSchema, raw);
  tokenizerModel(state, body.model);
  let prompt = "";
  for (const id of body.tokens) {
    const text = idText(id);
    if (text === null) throw badRequest(`Token id ${id} is out of vocabulary`);
    prompt += text;
  }
  sendJson(res, 200, JSON.stringify({ prompt }));
}

/** The tokenizer routes, for routes.ts. */
export const TOKENIZE_ROUTES = { "/tokenize": handleTokenize, "/detokenize": handleDetokenize } as const;
