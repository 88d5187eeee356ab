import { env } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { settleRequest } from "../../worker/src/metering/request-end.ts";
import type { UsageRow } from "../../worker/src/metering/record.ts";
import { depsFrom, type RequestDeps } from "../../worker/src/platform/deps.ts";
import { caller, limitsHarness, quiesceLimits } from "./limits-helpers.ts";

// LOG_REQUESTS (docs/configuration.md): which ended requests get a request_done log line.

afterEach(quiesceLimits);

function row(status: UsageRow["status"], errorCode: string | null): UsageRow {
  return {
    id: `req_${crypto.randomUUID().replaceAll("-", "")}`,
    at: new Date(),
    tenantId: "t1",
    environmentId: "e1",
    apiKeyId: "k1",
    endpoint: "chat",
    model: "sim-llama-8b",
    regionId: "r1",
    nodeId: "n1",
    status,
    httpStatus: 200,
    streamed: true,
    promptTokens: 5,
    completionTokens: 3,
    cachedPromptTokens: 0,
    ttftMs: 4,
    latencyMs: 9,
    costMicros: 1,
    errorCode,
  };
}

/** Ends one admitted request of each kind with LOG_REQUESTS = `setting`; returns the request_done lines. */
async function endRequests(setting: string | undefined): Promise<Record<string, unknown>[]> {
  const h = await limitsHarness();
  const lines: { event: string; fields: Record<string, unknown> }[] = [];
  const pending: Promise<unknown>[] = [];
  const vars = { ...env, REDIS_PREFIX: h.prefix, ...(setting === undefined ? {} : { LOG_REQUESTS: setting }) };
  const base = depsFrom(vars, (p) => pending.push(p), (event, fields) => lines.push({ event, fields }));
  const deps: RequestDeps = { ...base, requestId: "req_test", startedAt: Date.now() };
  for (const [status, code] of [["ok", null], ["error", "upstream_stream_error"], ["cancelled", "client_cancelled"]] as const) {
    const admission = await h.admit(caller({}));
    await settleRequest(deps, admission, row(status, code), null);
  }
  await Promise.all(pending);
  return lines.filter((l) => l.event === "request_done").map((l) => l.fields);
}

describe("request_done log lines", () => {
  it("by default are written only for requests that ended in an error or a cancel, with their error code", async () => {
    const lines = await endRequests(undefined);
    expect(lines.map((l) => [l.status, l.errorCode])).toEqual([
      ["error", "upstream_stream_error"],
      ["cancelled", "client_cancelled"],
    ]);
  });

  it("with LOG_REQUESTS = all are written for every request", async () => {
    const lines = await endRequests("all");
    expect(lines.map((l) => l.status)).toEqual(["ok", "error", "cancelled"]);
    expect(lines[0]).toMatchObject({ tenantId: "t1", model: "sim-llama-8b", node: "n1", promptTokens: 5, completionTokens: 3 });
  });

  it("refuses an unknown LOG_REQUESTS value at start, naming the setting", async () => {
    await expect(endRequests("everything")).rejects.toThrow(/LOG_REQUESTS must be one of "failed", "all"/);
  });
});
