import type { Usage } from "../../../schema/contracts/usage-tap.ts";

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
