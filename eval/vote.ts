import { z } from "zod";

/** The part of a `council.vote` answer (POST /v1/council/vote; docs/council.md) the harness reads. */
export const voteSchema = z.looseObject({
  object: z.literal("council.vote"),
  id: z.string(),
  council: z.string(),
  responses: z.record(z.string(), z.string()),
  failures: z.record(z.string(), z.string()).default({}),
  consensus: z.string().nullable().default(null),
  concerns: z.array(z.looseObject({ tag: z.string(), raised_by: z.array(z.string()) })),
  recommendation: z.string(),
  confidence: z.number(),
  partial: z.boolean().default(false),
});

/** A council vote as the harness reads it. */
export type Vote = z.infer<typeof voteSchema>;

/** What asking for one vote gave: the vote, or why there is none; the latency either way. */
export type VoteOutcome = { ok: true; vote: Vote; latencyMs: number } | { ok: false; error: string; latencyMs: number };

/** Where and how to ask. */
export interface VoteTarget {
  /** The gateway's base URL, e.g. http://127.0.0.1:8787 (without /v1). */
  url: string;
  key: string;
  council: string;
  /** Give up on one vote after this long (the council's own deadline is 30 s). */
  timeoutMs: number;
}

/** The OpenAI-shaped error message of an error answer, or the start of its body. */
function errorMessage(status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } };
    if (typeof body.error?.message === "string") return `HTTP ${status}: ${body.error.message}`;
  } catch {
    // Not JSON: the status and the start of the body.
  }
  return `HTTP ${status}: ${text.slice(0, 200)}`;
}

/** POSTs one question to /v1/council/vote and times it (request sent to body read). Never throws. */
export async function castVote(target: VoteTarget, question: string): Promise<VoteOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let res: Response;
  let text: string;
  try {
    res = await fetch(`${target.url.replace(/\/+$/, "")}/v1/council/vote`, {
      method: "POST",
      headers: { authorization: `Bearer ${target.key}`, "content-type": "application/json" },
      body: JSON.stringify({ question, council: target.council }),
      signal: AbortSignal.timeout(target.timeoutMs),
    });
    text = await res.text();
  } catch (error) {
    const timedOut = error instanceof DOMException && error.name === "TimeoutError";
    const reason = error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
    return { ok: false, error: timedOut ? `no answer within ${target.timeoutMs / 1000} s` : `cannot reach ${target.url} (${reason})`, latencyMs: elapsed() };
  }
  const latencyMs = elapsed();
  if (!res.ok) return { ok: false, error: errorMessage(res.status, text), latencyMs };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, error: `the answer is not JSON: ${text.slice(0, 200)}`, latencyMs };
  }
  const parsed = voteSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, error: `not a council.vote: ${issue ? `${issue.path.join(".") || "body"}: ${issue.message}` : "invalid"}`, latencyMs };
  }
  return { ok: true, vote: parsed.data, latencyMs };
}
