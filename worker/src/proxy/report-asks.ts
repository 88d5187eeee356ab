import {
  MAX_REPORTS_PER_ASK,
  REPORT_WAIT_MS,
  STREAM_REPORT_PATH,
  isReportToken,
  parseReportAnswer,
  type StreamReport,
} from "../../../schema/contracts/stream-report.ts";

/** Streams of one node that end within this long of each other share one ask for their reports. */
const COALESCE_MS = 5;
/** How often a stream's request looks for its answer while the ask is out: every 2 ms at first, backing off to… */
const POLL_MS = 2;
/** …at most every 100 ms (a sender whose request was cut leaves its waiters until their deadline). */
const MAX_POLL_MS = 100;
/** The ask's deadline: the node waits up to REPORT_WAIT_MS for streams still running, plus the trip. */
export const ASK_TIMEOUT_MS = REPORT_WAIT_MS + 1_000;

/** The reports one node is about to be asked for. */
interface Ask {
  url: string;
  tokens: string[];
}

/** This isolate's open asks, one per node. */
const open = new Map<string, Ask>();
/** Answers not yet taken by their stream's request, with when they came (for clean-up). */
const answers = new Map<string, { report: StreamReport | null; at: number }>();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The report of a stream that ended (schema/contracts/stream-report.ts). Streams of a node that end
 * within COALESCE_MS of each other are asked for in one request, sent by the first of them. The
 * others wait on timers of their own and pick their answer up from the isolate: the runtime drops a
 * request's background work that waits only on a promise another request resolves (its context has
 * nothing pending), so waiting for the sender's promise would lose their metering. Null when the node
 * has none, did not answer within ASK_TIMEOUT_MS, or could not be reached twice.
 */
export async function askReport(nodeUrl: string, token: string): Promise<StreamReport | null> {
  if (!isReportToken(token)) return null;
  let ask = open.get(nodeUrl);
  if (ask === undefined) {
    ask = { url: new URL(STREAM_REPORT_PATH, nodeUrl).href, tokens: [] };
    open.set(nodeUrl, ask);
    ask.tokens.push(token);
    await sleep(COALESCE_MS);
    if (open.get(nodeUrl) === ask) await send(nodeUrl, ask);
  } else {
    ask.tokens.push(token);
    if (ask.tokens.length >= MAX_REPORTS_PER_ASK) await send(nodeUrl, ask);
  }
  const deadline = Date.now() + COALESCE_MS + 2 * ASK_TIMEOUT_MS;
  for (let poll = POLL_MS; ; poll = Math.min(2 * poll, MAX_POLL_MS)) {
    const answer = answers.get(token);
    if (answer !== undefined) {
      answers.delete(token);
      return answer.report;
    }
    if (Date.now() > deadline) return null;
    await sleep(poll);
  }
}

async function send(nodeUrl: string, ask: Ask): Promise<void> {
  open.delete(nodeUrl);
  const tokens = ask.tokens;
  let answer: Map<string, StreamReport | null> | null = null;
  for (let attempt = 0; attempt < 2 && answer === null; attempt++) {
    try {
      const response = await fetch(ask.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ tokens }),
        signal: AbortSignal.timeout(ASK_TIMEOUT_MS),
      });
      if (!response.ok) {
        await response.body?.cancel();
        break; // the node answered: asking again would get the same
      }
      answer = parseReportAnswer(await response.json(), tokens);
      break;
    } catch (err) {
      // Unreachable: once more. Timed out: the node had its chance (and a report is given once).
      if (err instanceof Error && err.name === "TimeoutError") break;
    }
  }
  const now = Date.now();
  // Answers whose request stopped waiting (it gave up, or its isolate's work was cut) go after a while.
  for (const [t, a] of answers) if (now - a.at > 2 * ASK_TIMEOUT_MS) answers.delete(t);
  for (const token of tokens) answers.set(token, { report: answer?.get(token) ?? null, at: now });
}

/** Forgets the open asks and untaken answers (tests). */
export function resetReportAsks(): void {
  open.clear();
  answers.clear();
}
