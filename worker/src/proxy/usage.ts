/** Token usage as reported by the engine. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedPromptTokens: number;
}

/** How a proxied response ended, learned from its bytes as they passed. */
export interface StreamOutcome {
  status: "ok" | "error" | "cancelled" | "rejected";
  usage: Usage | null;
  /** Unix ms when the first body byte arrived from the backplane. */
  firstByteAt: number | null;
  /** Content-bearing SSE events delivered (a lower bound on completion tokens when usage is missing). */
  deliveredChunks: number;
  errorCode: string | null;
}

function count(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.floor(value) : 0;
}

/** Reads an OpenAI/vLLM `usage` object; null when absent or not an object. */
export function parseUsage(raw: unknown): Usage | null {
  if (typeof raw !== "object" || raw === null) return null;
  const u = raw as Record<string, unknown>;
  const details = u.prompt_tokens_details;
  const cached =
    typeof details === "object" && details !== null ? count((details as Record<string, unknown>).cached_tokens) : 0;
  return { promptTokens: count(u.prompt_tokens), completionTokens: count(u.completion_tokens), cachedPromptTokens: cached };
}

/** The outcome a tap reports once: the first `finish` wins (a client cancel racing the stream's end). */
export function outcomeOnce(): { done: Promise<StreamOutcome>; finish(outcome: StreamOutcome): void; readonly finished: boolean } {
  let settle: (outcome: StreamOutcome) => void = () => {};
  const done = new Promise<StreamOutcome>((resolve) => (settle = resolve));
  let finished = false;
  return {
    done,
    finish(outcome) {
      if (finished) return;
      finished = true;
      settle(outcome);
    },
    get finished() {
      return finished;
    },
  };
}
