import type { ServerResponse } from "node:http";
import { CapturedResponse, type HeadHeaders, isEventStream } from "./captured-response.ts";
import type { EngineState } from "./engine.ts";
import { badRequest, modelNotFound, SimHttpError, sendError, sendJson } from "./errors.ts";
import { handleGeneration } from "./generate.ts";
import { lookupModel } from "./lora.ts";
import { countTokensSchema, messagesSchema, toChatBody, toChatMessages } from "./messages-request.ts";
import { type ChatCompletion, countTokensBody, createStreamConverter, errorBody, messagesBody, type StreamConverter } from "./messages-wire.ts";
import { validateBody } from "./schemas.ts";
import { renderChat } from "./tokenizer.ts";

/**
 * The Anthropic Messages API as vLLM serves it (vllm/entrypoints/anthropic): a Messages request
 * is converted into a chat request and run by the same engine as /v1/chat/completions (queue,
 * timing, metrics, aborts), and the chat output is converted back. See docs/simulator.md.
 */

/** The model must be one this engine serves, and a generator (a pooling vLLM has no Messages handler). */
function checkModel(state: EngineState, name: string): void {
  const metrics = lookupModel(state, name);
  if (!metrics) throw modelNotFound(name);
  if (metrics.model.kind !== "generate") throw badRequest("The model does not support Messages API");
}

/**
 * The response the chat generation writes to. The job renders the chat wire onto a
 * ServerResponse; like vLLM's `create_messages`, which converts what `create_chat_completion`
 * yields, this one takes those bytes and writes the Messages form to the client. A stream is
 * converted event by event as the tokens come; a JSON answer when it ends. The client closing
 * its connection closes this response too, which aborts the generation.
 */
class MessagesResponse extends CapturedResponse {
  readonly #client: ServerResponse;
  #status = 200;
  #stream: StreamConverter | null = null;

  constructor(client: ServerResponse) {
    super(client.req);
    this.#client = client;
    client.on("close", () => this.emit("close"));
  }

  protected override onHead(status: number, headers: HeadHeaders): void {
    this.#status = status;
    if (isEventStream(headers)) {
      this.#stream = createStreamConverter();
      this.#client.writeHead(status, headers);
    }
  }

  override flushHeaders(): void {
    if (this.#stream) this.#client.flushHeaders();
  }

  protected override received(text: string, ended: boolean): void {
    if (!ended) return this.#forward(text);
    if (this.#stream) {
      this.#forward(text);
      if (!this.#client.writableEnded) this.#client.end();
    } else if (text === "") {
      // launcher.py's bare 500 (EngineDeadError): passed through as is.
      this.#client.writeHead(this.#status, { "content-length": 0 });
      this.#client.end();
    } else if (this.#status === 200) {
      sendJson(this.#client, 200, messagesBody(JSON.parse(text) as ChatCompletion));
    } else {
      // An ErrorResponse of the chat serving code, through translate_error_response.
      const { error } = JSON.parse(text) as { error: { type: string; message: string } };
      sendJson(this.#client, this.#status, errorBody(error.type, error.message));
    }
  }

  override destroy(error?: Error): this {
    this.#client.destroy(error);
    return this;
  }

  #forward(text: string): void {
    const stream = this.#stream;
    if (!stream || stream.ended || this.#client.writableEnded) return;
    const out = stream.push(text);
    if (out) this.#client.write(out);
    if (stream.ended) this.#client.end();
  }
}

/** POST /v1/messages: validated (AnthropicMessagesRequest), converted, and generated as a chat request. */
export function handleMessages(state: EngineState, raw: unknown, res: ServerResponse, headerRequestId: string | undefined, arrival: number): void {
  const body = validateBody(messagesSchema, raw);
  checkModel(state, body.model);
  handleGeneration(state, "chat", toChatBody(body), new MessagesResponse(res), headerRequestId, arrival);
}

/**
 * POST /v1/messages/count_tokens: the prompt the same conversion renders, counted like a chat
 * prompt, so it equals a Messages call's input_tokens. Nothing is generated or metered.
 */
export function handleCountTokens(state: EngineState, raw: unknown, res: ServerResponse): void {
  const body = validateBody(countTokensSchema, raw);
  checkModel(state, body.model);
  sendJson(res, 200, countTokensBody(renderChat(toChatMessages(body)).tokens));
}

/**
 * Errors of the Messages routes, before any byte was sent. Request-validation failures come from
 * vLLM's app-wide RequestValidationError handler, which does not know the route: they keep the
 * OpenAI shape (`{"error":{…,"type":"Bad Request","code":400}}`, as in vLLM issue #44000).
 * Errors the serving code returns go through api_router.py `translate_error_response`:
 * `{"type":"error","error":{"type":<vLLM type>,"message"}}` with status = code. Any other
 * exception is a 500 of type "internal_error".
 */
export function sendMessagesError(res: ServerResponse, error: unknown): void {
  if (error instanceof SimHttpError && error.type === "Bad Request") return sendError(res, error);
  if (res.headersSent) return;
  if (error instanceof SimHttpError) return sendJson(res, error.status, errorBody(error.type, error.message));
  sendJson(res, 500, errorBody("internal_error", error instanceof Error ? error.message : String(error)));
}
