import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback stand-in for the gateway's `POST /v1/council/vote` (the contract in docs/council.md),
 * so the evaluation harness is tested before, and apart from, the real council. It asks each
 * specialist through `ask(system, user)` in parallel, raises a tag when an answer contains one of the
 * specialist's tags, and recommends as the built-in council does (SECURITY and 7GEN critical).
 */

/** A specialist of the fake default council. */
export interface FakeSpecialist {
  name: string;
  /** Its system prompt; begins with the line the real persona begins with. */
  persona: string;
  tag: string;
}

const persona = (line: string) => `${line} Answer in a few sentences from your point of view.`;

/** The default council's seven specialists, with their personas' first lines. */
export const FAKE_SPECIALISTS: readonly FakeSpecialist[] = [
  { name: "crawdad", persona: persona("You are Crawdad, the security specialist of the council."), tag: "SECURITY CONCERN" },
  { name: "gecko", persona: persona("You are Gecko, the technical integration and performance specialist of the council."), tag: "PERF CONCERN" },
  { name: "turtle", persona: persona("You are Turtle, the seven-generations specialist of the council."), tag: "7GEN CONCERN" },
  { name: "eagle_eye", persona: persona("You are Eagle Eye, the observability and monitoring specialist of the council."), tag: "VISIBILITY CONCERN" },
  { name: "spider", persona: persona("You are Spider, the integration and dependencies specialist of the council."), tag: "INTEGRATION CONCERN" },
  { name: "peace_chief", persona: persona("You are Peace Chief, the consensus and stakeholders specialist of the council."), tag: "CONSENSUS CONCERN" },
  { name: "raven", persona: persona("You are Raven, the strategy specialist of the council."), tag: "STRATEGY CONCERN" },
];

const CRITICAL = ["SECURITY CONCERN", "7GEN CONCERN"];

/** How the fake council gets an answer: a system prompt and a user message in, the answer out (a throw is a failed specialist). */
export type FakeAsk = (system: string, user: string) => string | Promise<string>;

/** A received vote request. */
export interface FakeCouncilRequest {
  authorization: string | undefined;
  body: unknown;
}

/** A running fake council. */
export interface FakeCouncil {
  readonly url: string;
  readonly requests: FakeCouncilRequest[];
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function error(res: ServerResponse, status: number, message: string, code: string): void {
  send(res, status, { error: { message, type: status === 401 ? "authentication_error" : "invalid_request_error", param: null, code } });
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    return null;
  }
}

/** The vote body of the contract for `question`, asking every specialist through `ask`. */
async function vote(question: string, council: string, ask: FakeAsk): Promise<Record<string, unknown>> {
  const responses: Record<string, string> = {};
  const failures: Record<string, string> = {};
  await Promise.all(
    FAKE_SPECIALISTS.map(async (s) => {
      try {
        responses[s.name] = await ask(s.persona, question);
      } catch (err) {
        failures[s.name] = err instanceof Error ? err.message : String(err);
      }
    }),
  );
  const concerns = FAKE_SPECIALISTS.filter((s) => responses[s.name]?.includes(s.tag)).map((s) => ({ tag: s.tag, raised_by: [s.name] }));
  const recommendation =
    concerns.length === 0 ? "PROCEED" : concerns.length >= 3 || concerns.some((c) => CRITICAL.includes(c.tag)) ? "REVIEW REQUIRED" : "PROCEED WITH CAUTION";
  const peaceChief = FAKE_SPECIALISTS.find((s) => s.name === "peace_chief")?.persona ?? "";
  const answers = FAKE_SPECIALISTS.flatMap((s) => (responses[s.name] === undefined ? [] : [`${s.name}: ${responses[s.name]}`])).join("\n\n");
  let consensus: string | null;
  try {
    consensus = await ask(`${peaceChief}\n\nWrite the council's consensus from the specialists' answers.`, `Question: ${question}\n\n${answers}`);
  } catch {
    consensus = null;
  }
  const sorted = Object.fromEntries(Object.keys(responses).sort().map((k) => [k, responses[k]]));
  return {
    object: "council.vote",
    id: `vote_${createHash("sha256").update(question).digest("hex").slice(0, 16)}`,
    council,
    question,
    responses,
    failures,
    consensus,
    concerns,
    recommendation,
    confidence: Math.max(0, 100 - 15 * concerns.length),
    partial: Object.keys(failures).length > 0,
    audit_hash: createHash("sha256").update(JSON.stringify({ question, responses: sorted })).digest("hex"),
    timestamp: new Date().toISOString(),
    usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
  };
}

/** Starts the fake council on a free loopback port; only council "default" exists and `key` is the only key. */
export async function startFakeCouncil(opts: { key: string; ask: FakeAsk }): Promise<FakeCouncil> {
  const requests: FakeCouncilRequest[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      if (req.method !== "POST" || req.url !== "/v1/council/vote") return error(res, 404, "Not found", "not_found");
      const body = await readBody(req);
      requests.push({ authorization: req.headers.authorization, body });
      if (req.headers.authorization !== `Bearer ${opts.key}`) return error(res, 401, "Invalid API key", "invalid_api_key");
      const { question, council = "default" } = (body ?? {}) as { question?: unknown; council?: unknown };
      if (typeof question !== "string" || question.trim() === "") return error(res, 400, "question must be a non-empty string", "invalid_question");
      if (council !== "default") return error(res, 400, `Unknown council "${String(council)}"`, "unknown_council");
      send(res, 200, await vote(question, council, opts.ask));
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
