import { type OutgoingHttpHeader, type OutgoingHttpHeaders, ServerResponse } from "node:http";

/** The header argument of `writeHead`, whichever overload was used. */
export type HeadHeaders = OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined;

/** Whether a head announces an SSE body (the job's stream, or an error event in place of one). */
export function isEventStream(headers: HeadHeaders): boolean {
  const type = headers !== undefined && !Array.isArray(headers) ? headers["content-type"] : undefined;
  return typeof type === "string" && type.startsWith("text/event-stream");
}

function bodyText(chunk: unknown): string {
  if (typeof chunk === "string") return chunk;
  return Buffer.isBuffer(chunk) ? chunk.toString("utf8") : "";
}

/**
 * A response the generation job writes to that is tied to no socket: what the job writes is
 * handed, as text, to `received`, and the head to `onHead`. Emitting `close` on it aborts the
 * job, as a client disconnect would. Write and end callbacks are not called (the job passes none).
 */
export abstract class CapturedResponse extends ServerResponse {
  /** The head, before it is recorded. */
  protected onHead(_status: number, _headers: HeadHeaders): void {}

  /** A body chunk as text ("" for none); `ended` is set for the one `end()` brings. */
  protected abstract received(text: string, ended: boolean): void;

  override writeHead(
    statusCode: number,
    message?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
    headers?: OutgoingHttpHeaders | OutgoingHttpHeader[],
  ): this {
    const given = typeof message === "string" ? headers : message;
    this.onHead(statusCode, given);
    // Keeps headersSent truthful; nothing is written, this response has no socket.
    return super.writeHead(statusCode, given);
  }

  override flushHeaders(): void {}

  override write(chunk: unknown): boolean {
    this.received(bodyText(chunk), false);
    return true;
  }

  override end(chunk?: unknown): this {
    this.received(typeof chunk === "function" ? "" : bodyText(chunk), true);
    return this;
  }
}
