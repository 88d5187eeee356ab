import type { IncomingMessage, ServerResponse } from "node:http";
import { CapturedResponse, type HeadHeaders, isEventStream } from "./captured-response.ts";
import { sendJson } from "./errors.ts";
import type { StoredResponse } from "./responses-store.ts";
import type { ChatError, EventConverter, ResponseObject } from "./responses-wire.ts";

/** How a generation behind a Responses request ended. */
export type RunEnd =
  | { kind: "done"; response: ResponseObject }
  /** The engine's error: a JSON body or a bare 500 before the stream, or an in-band error event after. */
  | { kind: "error"; status: number; body: string }
  /** The engine cut the connection (sim_fault drop_mid_stream). */
  | { kind: "dropped" }
  /** Cancelled, or the client went away. */
  | { kind: "aborted" };

/** Where a run's output goes. */
export interface RunHooks {
  /** The engine took the request: `response.created` and `response.in_progress`. */
  start(events: string[]): void;
  events(events: string[]): void;
  /** Called once. */
  end(outcome: RunEnd): void;
}

/** SSE, as Starlette's StreamingResponse(media_type="text/event-stream") sends it. */
export const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8" } as const;

function errorBody(error: ChatError): string {
  return JSON.stringify({ error: { message: error.message, type: error.type, param: null, code: error.code } });
}

/**
 * The response a Responses request's chat generation writes to. Like vLLM's serving_responses,
 * which consumes the engine's output itself, this takes the chat route's SSE bytes and hands
 * the converted events to its hooks; it is tied to no socket, so a background response runs
 * with no client at all. `abort()` closes it, which aborts the generation (the job stops on
 * `close`, as on a client disconnect): slot freed, counted as finished_reason="abort".
 */
export class ResponsesRun extends CapturedResponse {
  readonly #converter: EventConverter;
  readonly #hooks: RunHooks;
  #status = 200;
  #streaming = false;
  #ended = false;

  constructor(req: IncomingMessage, converter: EventConverter, hooks: RunHooks) {
    super(req);
    this.#converter = converter;
    this.#hooks = hooks;
  }

  protected override onHead(status: number, headers: HeadHeaders): void {
    this.#status = status;
    if (!this.#ended && isEventStream(headers)) {
      this.#streaming = true;
      this.#hooks.start(this.#converter.open());
    }
  }

  protected override received(text: string, ended: boolean): void {
    if (!ended) return this.#push(text);
    if (!this.#streaming) {
      // An answer instead of a stream: launcher.py's bare 500, or an error before the stream.
      return this.#finish({ kind: "error", status: this.#status, body: text });
    }
    this.#push(text);
    // A chat stream always ends in [DONE] or an error event; anything else is a broken stream.
    this.#finish({ kind: "dropped" });
  }

  override destroy(): this {
    this.#finish({ kind: "dropped" });
    return this;
  }

  /** Stops the generation; nothing more reaches the hooks. Safe to call twice or after the end. */
  abort(): void {
    if (this.#ended) return;
    this.#finish({ kind: "aborted" });
    this.emit("close");
  }

  #push(text: string): void {
    if (this.#ended || text === "") return;
    const events = this.#converter.push(text);
    if (events.length > 0) this.#hooks.events(events);
    const result = this.#converter.result;
    if (result?.ok) this.#finish({ kind: "done", response: result.response });
    else if (result) this.#finish({ kind: "error", status: result.error.code, body: errorBody(result.error) });
  }

  #finish(outcome: RunEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#hooks.end(outcome);
  }
}

/**
 * A synchronous response: streamed to the client as the events come (headers with the first
 * two events, before the request even gets a slot, like Starlette's StreamingResponse), or
 * answered with the final object. `settle` sees the outcome first (the store keeps it).
 */
export function clientHooks(client: ServerResponse, stream: boolean, settle: (outcome: RunEnd) => void): RunHooks {
  const send = (events: string[]): void => {
    if (stream && !client.writableEnded) client.write(events.join(""));
  };
  return {
    start(events) {
      if (!stream) return;
      client.writeHead(200, SSE_HEADERS);
      send(events);
    },
    events: send,
    end(outcome) {
      settle(outcome);
      if (client.writableEnded || client.destroyed) return;
      if (outcome.kind === "dropped") {
        client.destroy();
      } else if (outcome.kind === "done") {
        if (stream) client.end();
        else sendJson(client, 200, JSON.stringify(outcome.response));
      } else if (outcome.kind === "error") {
        // After the stream started the error event was the last event sent.
        if (client.headersSent) client.end();
        else if (outcome.body === "") {
          client.writeHead(outcome.status, { "content-length": 0 });
          client.end();
        } else sendJson(client, outcome.status, outcome.body);
      }
    },
  };
}

/**
 * A background response: events go to its log when it streams, and the outcome replaces the
 * stored "queued" object unless it was cancelled meanwhile; a failure marks it "failed", as
 * vLLM's `_run_background_request` does.
 */
export function backgroundHooks(entry: StoredResponse): RunHooks {
  return {
    start: (events) => entry.log?.append(events),
    events: (events) => entry.log?.append(events),
    end(outcome) {
      const current = entry.response;
      if (outcome.kind === "done") {
        if (current?.status !== "cancelled") entry.response = outcome.response;
      } else if (outcome.kind !== "aborted" && current && current.status !== "completed" && current.status !== "cancelled") {
        current.status = "failed";
      }
      entry.cancel = null;
      entry.log?.end();
    },
  };
}
