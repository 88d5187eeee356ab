/**
 * A short, log-friendly description of a fetch or socket failure: "timed out", "aborted", the
 * system error code of the cause (ECONNREFUSED, ENOTFOUND…) when there is one, else the message.
 */
export function describeError(err: unknown, timeoutMs?: number): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === "TimeoutError") return timeoutMs === undefined ? "timed out" : `no answer within ${timeoutMs} ms`;
  if (err.name === "AbortError") return "aborted";
  const cause = (err as Error & { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as Error & { code?: unknown }).code;
    return typeof code === "string" ? `${code}: ${cause.message}` : cause.message;
  }
  return err.message;
}

/** The `message` of an OpenAI- or vLLM-shaped error body, else the start of the text (at most `max` characters). */
export function errorMessage(text: string, max = 300): string {
  try {
    const json: unknown = JSON.parse(text);
    if (typeof json === "object" && json !== null && "error" in json) {
      const error: unknown = json.error;
      if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") return error.message;
    }
  } catch {
    // Not JSON: show the text itself.
  }
  return text.slice(0, max).trim();
}
