/**
 * A node's model pull progress (NDJSON, one Ollama progress object a line; backplane/src/management/
 * routes.ts) turned into server-sent events for the operator, as each line arrives:
 *
 * - `data: {"status","digest"?,"total"?,"completed"?}` for each progress line;
 * - then exactly one of `event: done` (`data: {"status":"success","model","node_id"}`) once
 *   the node's stream ended after Ollama's `success`, or `event: error` (`data:` an OpenAI-shaped
 *   error body naming the node) for an error line, a stream that broke or one that ended early.
 *
 * The response's headers are out by then, so failures are in-band events, never a thrown error.
 * Cancelling the events (the operator went away) cancels the node's body, which ends the node call.
 */
import type { OpenAIErrorBody } from "../errors.ts";

/** One progress line of the node, as Ollama sends it. */
interface PullLine {
  status?: unknown;
  digest?: unknown;
  total?: unknown;
  completed?: unknown;
  error?: unknown;
}

/** Who is pulling what, for the final event. */
export interface PullTarget {
  nodeId: string;
  model: string;
}

const encoder = new TextEncoder();

function event(name: string | null, data: unknown): Uint8Array {
  return encoder.encode(`${name === null ? "" : `event: ${name}\n`}data: ${JSON.stringify(data)}\n\n`);
}

function errorEvent(target: PullTarget, message: string): Uint8Array {
  const body: OpenAIErrorBody = { error: { message: `Node ${target.nodeId}: ${message}`, type: "api_error", param: null, code: "upstream_error" } };
  return event("error", body);
}

/** The progress fields the operator gets, in Ollama's names; anything else on the line is dropped. */
function progress(line: PullLine): Record<string, unknown> {
  return {
    status: typeof line.status === "string" ? line.status : "",
    ...(typeof line.digest === "string" ? { digest: line.digest } : {}),
    ...(typeof line.total === "number" ? { total: line.total } : {}),
    ...(typeof line.completed === "number" ? { completed: line.completed } : {}),
  };
}

function parse(text: string): PullLine {
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value === "object" && value !== null) return value;
  } catch {
    // Reported as an error line below.
  }
  return { error: `unreadable pull progress from the node: ${text.slice(0, 200)}` };
}

/** The server-sent events of a pull whose node answered 200 with `body` (NDJSON). */
export function pullEvents(body: ReadableStream<Uint8Array>, target: PullTarget): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let lastStatus: string | null = null;

  /** Turns the complete lines in `buffer` into events; true once an error line ended the pull. */
  function drain(controller: ReadableStreamDefaultController<Uint8Array>, final: boolean): boolean {
    const lines = buffer.split("\n");
    buffer = final ? "" : (lines.pop() ?? "");
    for (const raw of lines) {
      const text = raw.trim();
      if (text === "") continue;
      const line = parse(text);
      if (line.error !== undefined) {
        controller.enqueue(errorEvent(target, `pull of ${target.model} failed: ${typeof line.error === "string" ? line.error : JSON.stringify(line.error)}`));
        return true;
      }
      const shaped = progress(line);
      lastStatus = shaped.status as string;
      controller.enqueue(event(null, shaped));
    }
    return false;
  }

  function end(controller: ReadableStreamDefaultController<Uint8Array>, last: Uint8Array | null): void {
    if (last !== null) controller.enqueue(last);
    controller.close();
  }

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = await reader.read().catch((err: unknown) => err instanceof Error ? err : new Error(String(err)));
      if (chunk instanceof Error) {
        return end(controller, errorEvent(target, `the pull's progress stream broke (${chunk.message}); the pull may go on on the node.`));
      }
      if (chunk.done) {
        buffer += decoder.decode();
        if (drain(controller, true)) return end(controller, null);
        return end(
          controller,
          lastStatus === "success"
            ? event("done", { status: "success", model: target.model, node_id: target.nodeId })
            : errorEvent(target, `the pull of ${target.model} ended before Ollama reported success.`),
        );
      }
      buffer += decoder.decode(chunk.value, { stream: true });
      if (drain(controller, false)) {
        end(controller, null);
        // Nothing more is wanted from the node: release its connection (not awaited, so the
        // operator's stream ends now; a failing cancel has nothing left to tell anyone).
        void reader.cancel().catch(() => undefined);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
