import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import { type EngineState, resolveModel } from "./engine.ts";
import { logprobsLimitError } from "./answer.ts";
import { servedName } from "./lora.ts";
import { badRequest, sseErrorEvent } from "./errors.ts";
import { runGeneration } from "./job.ts";
import { pyFloat } from "./metrics.ts";
import { type OutputSpec, reasoningTokens } from "./output.ts";
import { type GenerationRequest, parseChatRequest, parseCompletionRequest } from "./requests.ts";
import { scriptedAnswer } from "./script.ts";
import type { SchedulingPolicy } from "./options.ts";

/** vLLM's random_uuid(): uuid4 as 32 hex characters. */
export function randomHex(): string {
  return randomUUID().replaceAll("-", "");
}

/**
 * serving_engine.py `_validate_input`: the prompt must leave room for the output. Wording of
 * vLLM >= 0.10.2 (PR #24995); clients should match on status 400 + "maximum context length".
 */
function checkContext(request: GenerationRequest, maxModelLen: number): number[] {
  return request.prompts.map((prompt) => {
    const t = prompt.tokens;
    const m = request.maxTokens;
    if (m === null) {
      if (t >= maxModelLen) {
        throw badRequest(
          `This model's maximum context length is ${maxModelLen} tokens. However, your request has ${t} input tokens. ` +
            "Please reduce the length of the input messages.",
        );
      }
      return maxModelLen - t;
    }
    if (t + m > maxModelLen) {
      throw badRequest(
        `'max_tokens' or 'max_completion_tokens' is too large: ${m}. This model's maximum context length is ${maxModelLen} ` +
          `tokens and your request has ${t} input tokens (${m} > ${maxModelLen} - ${t}).`,
      );
    }
    return m;
  });
}

/**
 * SamplingParams._verify_args for the parameters the simulator reads, then the V1 engine's
 * processor.py `_validate_supported_sampling_params`: vLLM 0.10-0.11 run only the V1 engine, which
 * refuses best_of > 1 (V0 generated best_of sequences and returned the best n).
 */
function checkSampling(request: GenerationRequest): void {
  const { n, bestOf, temperature, topP, maxTokens, minTokens } = request;
  if (n < 1) throw badRequest(`n must be at least 1, got ${n}.`);
  if (bestOf !== null && bestOf < 1) throw badRequest(`best_of must be at least 1, got ${bestOf}.`);
  if (bestOf !== null && bestOf < n) throw badRequest(`best_of must be greater than or equal to n, got n=${n} and best_of=${bestOf}.`);
  if (temperature !== null && temperature < 0) throw badRequest(`temperature must be non-negative, got ${pyFloat(temperature)}.`);
  if (topP !== null && (topP <= 0 || topP > 1)) throw badRequest(`top_p must be in (0, 1], got ${pyFloat(topP)}.`);
  if (maxTokens !== null && maxTokens < 1) throw badRequest(`max_tokens must be at least 1, got ${maxTokens}.`);
  if (minTokens < 0) throw badRequest(`min_tokens must be greater than or equal to 0, got ${minTokens}.`);
  if (maxTokens !== null && minTokens > maxTokens) {
    throw badRequest(`min_tokens must be less than or equal to max_tokens=${maxTokens}, got ${minTokens}.`);
  }
  if (bestOf !== null && bestOf > 1) throw badRequest("vLLM V1 does not yet support best_of.");
}

/** vLLM's refusal of a non-zero `priority` on an fcfs engine (AsyncLLM add_request's ValueError), or null. */
export function priorityRefusal(policy: SchedulingPolicy, priority: number): string | null {
  return policy === "fcfs" && priority !== 0 ? `Got priority ${priority} but Priority scheduling is not enabled.` : null;
}

/**
 * POST /v1/chat/completions and /v1/completions. Checks run in vLLM's order (request validators,
 * model, images, context length, sampling parameters, logprobs); any failure is thrown as a
 * SimHttpError.
 */
export function handleGeneration(
  state: EngineState,
  endpoint: "chat" | "completion",
  body: unknown,
  res: ServerResponse,
  headerRequestId: string | undefined,
  arrival: number,
): void {
  const request = endpoint === "chat" ? parseChatRequest(body) : parseCompletionRequest(body);
  const metrics = resolveModel(state, request.model, endpoint);
  const { model } = metrics;
  // chat_utils.py: the multimodal registry refuses a text-only model; serving_chat.py reports it
  // as f"{e} {e.__cause__}", hence the " None".
  if (request.images > 0 && model.vision !== true) throw badRequest(`${model.name} is not a multimodal model None`);
  const limits = checkContext(request, model.maxModelLen);
  checkSampling(request);
  if (request.fault === "engine_error") {
    // launcher.py: EngineDeadError / EngineGenerateError become a bare 500 with an empty body.
    res.writeHead(500, { "content-length": 0 });
    res.end();
    return;
  }
  // processor.py refuses too many logprobs when the engine takes the request: a 400 before a
  // non-stream answer, but inside a stream whose 200 is already out (no role chunk, then [DONE]).
  const tooMany = request.logprobs === null ? null : logprobsLimitError(request.logprobs);
  if (tooMany !== null) {
    if (!request.stream) throw badRequest(tooMany);
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    res.end(sseErrorEvent(tooMany, "BadRequestError", 400));
    return;
  }
  // vLLM's add_request: a non-zero priority needs --scheduling-policy priority. Like the logprobs
  // refusal above it comes when the engine takes the request: a 400, or in band inside a stream.
  const refused = priorityRefusal(state.options.schedulingPolicy, request.priority);
  if (refused !== null) {
    if (!request.stream) throw badRequest(refused);
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    res.end(sseErrorEvent(refused, "BadRequestError", 400));
    return;
  }
  // serving_engine.py _base_request_id: the X-Request-Id header, else the body's request_id, else random.
  const base = headerRequestId || request.requestId || randomHex();
  const head = {
    endpoint,
    id: `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${base}`,
    created: Math.floor(Date.now() / 1000),
    model: servedName(state, request.model, metrics),
  };
  const { options } = state;
  const output: OutputSpec = {
    answer: request.answer,
    reasoningTokens: endpoint === "chat" && model.reasoning === true ? reasoningTokens(options.outputTokens) : 0,
    includeReasoning: request.includeReasoning,
    textEosAt: request.ignoreEos ? Infinity : Math.max(options.outputTokens, request.minTokens + 1),
    // Tests' scripted answers replace a text answer only (script.ts); like a guided answer, EOS follows the text.
    scripted: request.answer.kind === "text" ? scriptedAnswer(options.script, request.messages) : null,
  };
  runGeneration(state, { request, metrics, head, limits, output, res, arrival });
}
