import { afterEach, describe, expect, it, vi } from "vitest";
import type { StreamReport } from "../../schema/contracts/stream-report.ts";
import { askReport, resetReportAsks } from "../../worker/src/proxy/report-asks.ts";

// How the gateway asks nodes for the reports of their streams (report-asks.ts; the backplane's side
// is in tests/node/backplane-stream-report.test.ts, the whole path in proxy.test.ts).

afterEach(() => {
  resetReportAsks();
  vi.unstubAllGlobals();
});

const report = (completion: number): StreamReport => ({ status: "ok", usage: { prompt_tokens: 3, completion_tokens: completion, cached_tokens: 0 }, delivered_chunks: completion, error_code: null });
const token = (n: number) => n.toString(16).padStart(32, "0");

/** Stubs fetch with `answer` (a function of the asked tokens, or an Error to throw); records every ask. */
function nodeAnswers(answer: ((tokens: string[]) => Response) | Error) {
  const asks: { url: string; tokens: string[] }[] = [];
  vi.stubGlobal("fetch", (url: string, init: { body: string }) => {
    const tokens = (JSON.parse(init.body) as { tokens: string[] }).tokens;
    asks.push({ url, tokens });
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer(tokens));
  });
  return asks;
}

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

describe("asking a node for stream reports", () => {
  it("asks once for the streams of a node that ended together, and gives each its own report", async () => {
    const asks = nodeAnswers((tokens) => json({ reports: Object.fromEntries(tokens.map((t, i) => [t, report(i + 1)])) }));
    const answers = await Promise.all([askReport("http://node-a.test", token(1)), askReport("http://node-a.test", token(2)), askReport("http://node-b.test", token(3))]);
    expect(asks).toEqual([
      { url: "http://node-a.test/stream-reports", tokens: [token(1), token(2)] },
      { url: "http://node-b.test/stream-reports", tokens: [token(3)] },
    ]);
    expect(answers.map((a) => a?.usage?.completion_tokens)).toEqual([1, 2, 1]);
  });

  it("gives null for a token the node has no report of, and for a malformed one without asking", async () => {
    const asks = nodeAnswers(() => json({ reports: { [token(1)]: null } }));
    expect(await askReport("http://node.test", token(1))).toBeNull();
    expect(await askReport("http://node.test", "../admin")).toBeNull();
    expect(asks).toHaveLength(1);
  });

  it("asks a node it could not reach once more, then gives up with null", async () => {
    const asks = nodeAnswers(new TypeError("connection refused"));
    expect(await askReport("http://node.test", token(1))).toBeNull();
    expect(asks).toHaveLength(2);
  });

  it("does not ask again when the node answered with an error, or with something that is not an answer", async () => {
    let asks = nodeAnswers(() => json({ error: { message: "no" } }, 400));
    expect(await askReport("http://node.test", token(1))).toBeNull();
    expect(asks).toHaveLength(1);
    asks = nodeAnswers(() => json({ reports: { [token(2)]: { status: "fine" } } }));
    expect(await askReport("http://node.test", token(2))).toBeNull();
    expect(asks).toHaveLength(1);
  });

  it("sends a full ask at once instead of waiting for more", async () => {
    const asks = nodeAnswers((tokens) => json({ reports: Object.fromEntries(tokens.map((t) => [t, report(1)])) }));
    const all = Array.from({ length: 300 }, (_, i) => askReport("http://node.test", token(i)));
    const answers = await Promise.all(all);
    expect(asks.map((a) => a.tokens.length)).toEqual([256, 44]);
    expect(answers.every((a) => a?.status === "ok")).toBe(true);
  });
});
