/**
 * End to end: the specialist council through the local stack, the simulated engine answering as the
 * personas would (`--script eval/council-script.json`, tests only): the shipped evaluation cases
 * pass through `npm run eval`'s harness and CLI, with no regression on a second run; the council as
 * a chat model through the official `openai` client, streamed and not; a council that leaves
 * breadcrumbs warms the tenant's memory trail of the concern it keeps meeting; the CLI manages councils.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, type Stack } from "../../dev/stack.ts";
import { loadCases } from "../../eval/cases.ts";
import { runEval } from "../../eval/harness.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { adminJson } from "../support/e2e-calls.ts";
import type { CouncilJson } from "../../worker/src/council/wire.ts";

const run = promisify(execFile);
let started: TestStack;
let stack: Stack;
let resultsDir: string;
const TENANT = "ten_demo";

beforeAll(async () => {
  started = await startTestStack("council", { simArgs: ["--ttft-ms", "2", "--inter-token-ms", "1", "--script", join(ROOT, "eval/council-script.json")] });
  stack = started.stack;
  resultsDir = mkdtempSync(join(tmpdir(), "switchyard-eval-"));
}, 120_000);

afterAll(async () => {
  rmSync(resultsDir, { recursive: true, force: true });
  await started?.close();
});

const PASSWORDS = "Should we store user passwords in plain text in the database so support staff can read them back to customers?";

describe("the council on the local stack", () => {
  it("passes the shipped evaluation cases, and a second run shows no regression", async () => {
    const cases = loadCases(join(ROOT, "eval/council-cases.json"));
    const first = await runEval({ url: stack.gatewayUrl, key: stack.apiKey, council: "default", cases, resultsDir, save: true });
    expect(first.cases.map((c) => [c.name, c.pass, c.error])).toEqual(cases.map((c) => [c.name, true, null]));
    expect(first.ok).toBe(true);
    const second = await runEval({ url: stack.gatewayUrl, key: stack.apiKey, council: "default", cases, resultsDir, save: true });
    expect(second.ok).toBe(true);
    expect(second.comparison.regressions).toEqual([]);
    // The CLI, as an operator runs it.
    const { stdout } = await run(process.execPath, ["eval/run.ts", "--council", "default", "--url", stack.gatewayUrl, "--key", stack.apiKey, "--results", resultsDir]);
    expect(stdout).toContain("plain-text-passwords");
  });

  it("answers as a chat model through the openai client, streamed and not", async () => {
    const client = new OpenAI({ baseURL: `${stack.gatewayUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain("council/default");
    const { data, response } = await client.chat.completions.create({ model: "council/default", messages: [{ role: "user", content: PASSWORDS }] }).withResponse();
    expect(data.choices[0]?.message.content).toContain("advises against storing passwords in plain text");
    expect((data as unknown as { council_vote: { recommendation: string } }).council_vote.recommendation).toBe("REVIEW REQUIRED");
    expect(response.headers.get("x-switchyard-vote-id")).toMatch(/^vote_/);
    const stream = await client.chat.completions.create({ model: "council/default", messages: [{ role: "user", content: PASSWORDS }], stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toBe(data.choices[0]?.message.content);
  });

  it("leaves breadcrumbs when the council asks for it: the concern it keeps meeting is a hot trail", async () => {
    const builtin = await adminJson<CouncilJson>(stack, "GET", `/councils/${TENANT}/default`);
    const file = join(resultsDir, "remember.json");
    writeFileSync(file, JSON.stringify({ specialists: builtin.specialists, synthesiser: builtin.synthesiser, leave_breadcrumbs: true }));
    const cli = (args: string[]) => run(process.execPath, ["worker/cli/admin.ts", ...args, "--url", stack.gatewayUrl, "--token", stack.adminToken]);
    await cli(["council", "set", TENANT, "remember", "--file", file]);
    expect((await cli(["council", "list", TENANT])).stdout).toMatch(/remember\s+council\/remember/);
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${stack.gatewayUrl}/v1/council/vote`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ question: PASSWORDS, council: "remember" }),
      });
      expect(res.status).toBe(200);
    }
    // The scheduled job writes the votes (and their breadcrumbs) in the background of its run: poll.
    type Hot = { trails: { source: string; target: string | null; temperature: number; breadcrumbs: number }[] };
    let trail: Hot["trails"][number] | undefined;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline && trail?.breadcrumbs !== 2; ) {
      await stack.runScheduled();
      const hot = (await (await fetch(`${stack.gatewayUrl}/v1/memory/trails/hot?min_temp=0`, { headers: { authorization: `Bearer ${stack.apiKey}` } })).json()) as Hot;
      trail = hot.trails.find((t) => t.source === "council:remember");
      if (trail?.breadcrumbs !== 2) await new Promise((r) => setTimeout(r, 200));
    }
    expect(trail).toMatchObject({ target: "SECURITY CONCERN", breadcrumbs: 2 });
    expect(trail?.temperature).toBeGreaterThan(85);
    expect((await cli(["council", "votes", "--council", "remember"])).stdout).toContain("REVIEW REQUIRED");
    await cli(["council", "remove", TENANT, "remember"]);
  });
});
