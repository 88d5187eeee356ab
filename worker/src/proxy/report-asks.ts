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
/** The ask's deadline: the node waits up to REPORT_WAIT_MS for streams still running, plus the trip. */
export const ASK_TIMEOUT_MS = REPORT_WAIT_MS + 1_000;

/** The reports one node is about to be asked for, and who waits for each. */
interface Ask {
  url: string;
  waiters: Map<string, (report: StreamReport | null) => void>;
}

/** This isolate's open asks, one per node. */
const open = new Map<string, Ask>();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The report of a stream that ended (schema/contracts/stream-report.ts): streams of the node that
 * end within COALESCE_MS of each other are asked for in one request, sent by the first of them (so
 * the request is made while a request that waits for it is still running, as for the end batch in
 * metering/request-end.ts). Null when the node has none, did not answer within ASK_TIMEOUT_MS, or
 * could not be reached twice.
 */
export function askReport(nodeUrl: string, token: string): Promise<StreamReport | null> {
  if (!isReportToken(token)) return Promise.resolve(null);
  let ask = open.get(nodeUrl);
  const opener = ask === undefined;
  if (ask === undefined) {
    ask = { url: new URL(STREAM_REPORT_PATH, nodeUrl).href, waiters: new Map() };
    open.set(nodeUrl, ask);
  }
  const current = ask;
  const report = new Promise<StreamReport | null>((resolve) => current.waiters.set(token, resolve));
  if (current.waiters.size >= MAX_REPORTS_PER_ASK) void send(nodeUrl, current);
  else if (opener) void sleep(COALESCE_MS).then(() => send(nodeUrl, current));
  return report;
}

async function send(nodeUrl: string, ask: Ask): Promise<void> {
  if (open.get(nodeUrl) !== ask) return; // sent already (it filled up)
  open.delete(nodeUrl);
  const tokens = [...ask.waiters.keys()];
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
  for (const [token, resolve] of ask.waiters) resolve(answer?.get(token) ?? null);
}

/** Forgets the open asks without sending them (tests). */
export function resetReportAsks(): void {
  for (const ask of open.values()) for (const resolve of ask.waiters.values()) resolve(null);
  open.clear();
}
