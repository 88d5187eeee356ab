/**
 * The council's public routes (docs/council.md): POST /v1/council/vote, POST
 * /v1/council/specialist/{name}, GET /v1/council/votes[/{id}], and the council as a chat model
 * (`council/<name>` on /v1/chat/completions, with `councilChat`). A key needs the `chat` scope.
 */
import type { Context } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { DEFAULT_PAGE, MAX_PAGE } from "../admin/pagination.ts";
import { readBody } from "../routes/proxy.ts";
import type { ProxyRequest } from "../proxy/validate.ts";
import { councilsFor } from "./config.ts";
import { DEFAULT_COUNCIL_NAME } from "./builtin.ts";
import { askOne, runVote, streamVote } from "./run.ts";
import { listVotes, readVote } from "./votes.ts";
import type { Council } from "./types.ts";

/** The longest question a council takes (characters). */
export const MAX_QUESTION_CHARS = 8_000;
/** The model name prefix of councils on /v1/chat/completions and /v1/models. */
export const COUNCIL_MODEL_PREFIX = "council/";

const decoder = new TextDecoder();

function requireChat(c: Context<AppEnv>): void {
  if (!c.get("identity").scopes.includes("chat")) throw new ApiError("permission_denied", "This API key lacks the 'chat' scope the council needs (it asks chat models).");
}

/** The request's JSON object; a 400 naming the problem otherwise. */
async function readObject(c: Context<AppEnv>): Promise<Record<string, unknown>> {
  const raw = decoder.decode(await readBody(c, "chat"));
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new ApiError("invalid_json", "The body is not valid JSON: send an object such as {\"question\": \"…\"}.");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new ApiError("invalid_value", "The body must be a JSON object such as {\"question\": \"…\"}.");
  return body as Record<string, unknown>;
}

/** A question: a non-empty string of at most MAX_QUESTION_CHARS characters. */
export function checkQuestion(value: unknown, param = "question"): string {
  if (typeof value !== "string" || value.trim() === "") throw new ApiError("invalid_value", `'${param}' must be a non-empty string: the question for the council.`, { param });
  if (value.length > MAX_QUESTION_CHARS) throw new ApiError("invalid_value", `'${param}' is ${value.length} characters; a council takes at most ${MAX_QUESTION_CHARS}. Shorten it.`, { param });
  return value;
}

/** The council named `name` (default: `default`) among the tenant's; a 400 listing them otherwise. */
export async function councilNamed(c: Context<AppEnv>, name: unknown): Promise<Council> {
  if (name !== undefined && name !== null && typeof name !== "string") throw new ApiError("invalid_value", "'council' must be a council's name.", { param: "council" });
  const wanted = name ?? DEFAULT_COUNCIL_NAME;
  const all = await councilsFor(c.get("deps"), c.get("identity").tenantId, c.get("routing").snapshot);
  const council = all.find((x) => x.name === wanted);
  if (!council) {
    const names = all.map((x) => x.name).join(", ") || "none (the catalogue has no chat model for the built-in council)";
    throw new ApiError("invalid_value", `There is no council '${wanted}'. Councils: ${names}.`, { param: "council" });
  }
  return council;
}

/** POST /v1/council/vote */
export async function voteHandler(c: Context<AppEnv>): Promise<Response> {
  requireChat(c);
  const body = await readObject(c);
  const question = checkQuestion(body.question);
  const council = await councilNamed(c, body.council);
  const answer = await runVote(c, council, question);
  return c.json(answer, 200, { "x-request-id": c.get("deps").requestId });
}

/** POST /v1/council/specialist/{name} */
export async function specialistHandler(c: Context<AppEnv>): Promise<Response> {
  requireChat(c);
  const body = await readObject(c);
  const question = checkQuestion(body.question);
  const council = await councilNamed(c, body.council);
  const name = c.req.param("name");
  const specialist = council.specialists.find((s) => s.name === name);
  if (!specialist) {
    throw new ApiError("invalid_value", `The council '${council.name}' has no specialist '${name ?? ""}'. Its specialists: ${council.specialists.map((s) => s.name).join(", ")}.`, { param: "name" });
  }
  const result = await askOne(c, council, specialist, question);
  return c.json(
    {
      object: "council.specialist_answer",
      id: result.id,
      council: council.name,
      specialist: specialist.name,
      question,
      answer: result.answer,
      failure: result.failure,
      concerns: result.concerns,
      usage: result.usage,
    },
    200,
    { "x-request-id": c.get("deps").requestId },
  );
}

function pageLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_PAGE;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) throw new ApiError("invalid_value", `'limit' must be a whole number from 1 to ${MAX_PAGE}.`, { param: "limit" });
  return n;
}

/** GET /v1/council/votes: the key's own tenant's votes, newest first. */
export async function listVotesHandler(c: Context<AppEnv>): Promise<Response> {
  const tenantId = c.get("identity").tenantId;
  const limit = pageLimit(c.req.query("limit"));
  const page = await c.get("deps").db((db) => listVotes(db, { tenantId, council: c.req.query("council"), cursor: c.req.query("cursor"), limit }));
  return c.json(page);
}

/** GET /v1/council/votes/{id}: one of the tenant's votes (another tenant's is a 404 like an unknown id). */
export async function readVoteHandler(c: Context<AppEnv>): Promise<Response> {
  const id = c.req.param("id") ?? "";
  const vote = await c.get("deps").db((db) => readVote(db, id, c.get("identity").tenantId));
  if (!vote) throw new ApiError("not_found", `No council vote '${id}' for this key's tenant.`);
  return c.json(vote);
}

/** The question a chat body asks a council: its last user message's text. */
function questionOf(req: ProxyRequest): string {
  const messages = req.json?.messages;
  const last = Array.isArray(messages) ? [...(messages as { role?: unknown; content?: unknown }[])].reverse().find((m) => m.role === "user") : undefined;
  const content = last?.content;
  const text = typeof content === "string" ? content : Array.isArray(content) ? content.map((p: { type?: unknown; text?: unknown }) => (p.type === "text" && typeof p.text === "string" ? p.text : "")).join("") : "";
  return checkQuestion(text, "messages");
}

/**
 * `council/<name>` on /v1/chat/completions (routes/proxy.ts hands it here): the question is the
 * last user message; the answer is the consensus, as a chat completion (with the vote's verdict in
 * `council_vote`) or, streamed, as the synthesiser's stream.
 */
export async function councilChat(c: Context<AppEnv>, req: ProxyRequest): Promise<Response> {
  requireChat(c);
  const name = req.model.slice(COUNCIL_MODEL_PREFIX.length);
  const council = await councilNamed(c, name).catch((err: unknown) => {
    if (err instanceof ApiError) throw new ApiError("model_not_found", `The model '${req.model}' does not exist or you do not have access to it. GET /v1/models lists the models and councils this key may use.`, { param: "model" });
    throw err;
  });
  const question = questionOf(req);
  if (req.stream) return streamVote(c, council, question, req.clientWantsUsage);
  const vote = await runVote(c, council, question);
  const body = {
    id: `chatcmpl-${vote.id}`,
    object: "chat.completion",
    created: Math.floor(Date.parse(vote.timestamp) / 1000),
    model: req.model,
    choices: [{ index: 0, message: { role: "assistant", content: vote.consensus ?? "" }, logprobs: null, finish_reason: "stop" }],
    usage: vote.usage,
    council_vote: { id: vote.id, recommendation: vote.recommendation, confidence: vote.confidence, concerns: vote.concerns, partial: vote.partial, audit_hash: vote.audit_hash },
  };
  return c.json(body, 200, { "x-request-id": c.get("deps").requestId, "x-switchyard-vote-id": vote.id });
}
