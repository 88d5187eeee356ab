/**
 * `npm run eval` end to end against a loopback fake of POST /v1/council/vote (the contract the
 * real council answers), run as the CLI process it is: table, exit codes, saved runs, regressions,
 * where the key comes from.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { EvalReport } from "../../eval/harness.ts";
import { castVote } from "../../eval/vote.ts";
import { type FakeCouncil, startFakeCouncil } from "../support/fake-council.ts";

const run = promisify(execFile);
const KEY = "sk-eval-test";

let council: FakeCouncil;
let dir: string;
/** When true, Turtle no longer raises 7GEN CONCERN about the backups: that case fails. */
let turtleForgets = false;

/** Persona answers that meet the shipped cases (eval/council-cases.json). */
function ask(system: string, question: string): string {
  if (system.includes("Write the council's consensus")) return "The council has spoken.";
  if (system.startsWith("You are Crawdad")) {
    if (question.includes("plain text") || question.includes("backups")) return "SECURITY CONCERN: a real risk to our users.";
    return "Low risk; keep the usual protection.";
  }
  if (system.startsWith("You are Turtle")) {
    if (question.includes("backups") && !turtleForgets) return "7GEN CONCERN: the future will miss this data.";
    return "Over the long term this is fine.";
  }
  return "No objection from me.";
}

async function evalCli(args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["eval/run.ts", ...args], {
      env: { ...process.env, SWITCHYARD_API_KEY: "", SWITCHYARD_URL: "", SWITCHYARD_DATA_DIR: join(dir, "no-stack"), ...env },
    });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

const results = () => join(dir, "results");
const common = () => ["--url", council.url, "--results", results()];

beforeEach(async () => {
  turtleForgets = false;
  dir = mkdtempSync(join(tmpdir(), "switchyard-eval-"));
  council = await startFakeCouncil({ key: KEY, ask });
});
afterEach(async () => {
  await council.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("npm run eval", () => {
  it("runs the shipped cases through /v1/council/vote, prints the table, saves the run with --save and exits 0", async () => {
    const { stdout, stderr, code } = await evalCli([...common(), "--key", KEY, "--council", "default", "--save"]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain(`Council "default" at ${council.url}: 3 cases, one after another`);
    expect(stdout).toMatch(/plain-text-passwords\s+pass\s+4\/4\s+100 %\s+SECURITY CONCERN\s+REVIEW REQUIRED\s+\d+\.\d\d s/);
    expect(stdout).toMatch(/api-usage-logging\s+pass\s+4\/4\s+100 %\s+none\s+PROCEED\s/);
    expect(stdout).toMatch(/delete-all-backups\s+pass\s+4\/4\s+100 %\s+7GEN CONCERN, SECURITY CONCERN\s+REVIEW REQUIRED\s/);
    expect(stdout).toContain("Overall: 3/3 cases passed (100 %), 12/12 checks (100 %)");
    expect(stdout).toMatch(/Latency per vote: p50 \d+\.\d\d s, max \d+\.\d\d s; target under 30\.00 s on real GPUs: met/);
    expect(stdout).toContain("Regressions: no saved run to compare with");
    expect(stderr).toContain("pass delete-all-backups");

    expect(council.requests).toHaveLength(3);
    expect(council.requests.every((r) => r.authorization === `Bearer ${KEY}`)).toBe(true);
    expect(council.requests[0]?.body).toEqual({ question: expect.stringContaining("plain text") as unknown, council: "default" });

    const files = readdirSync(results()).sort();
    expect(files).toHaveLength(2);
    expect(files).toContain("latest.json");
    const saved = JSON.parse(readFileSync(join(results(), "latest.json"), "utf8")) as EvalReport;
    expect(saved).toMatchObject({ council: "default", ok: true, order: "sequential", summary: { passedCases: 3, cases: 3 } });
    expect(saved.cases.map((c) => [c.name, c.pass, c.vote?.concerns])).toEqual([
      ["plain-text-passwords", true, ["SECURITY CONCERN"]],
      ["api-usage-logging", true, []],
      ["delete-all-backups", true, ["7GEN CONCERN", "SECURITY CONCERN"]],
    ]);
    expect(readFileSync(join(results(), files.find((f) => f !== "latest.json") ?? ""), "utf8")).toBe(readFileSync(join(results(), "latest.json"), "utf8"));
  });

  it("exits 1 and lists a regression when a case that passed in the saved run fails now, keeping the saved run without --save", async () => {
    expect((await evalCli([...common(), "--key", KEY, "--save"])).code).toBe(0);
    const baseline = readFileSync(join(results(), "latest.json"), "utf8");
    turtleForgets = true;
    const { stdout, code } = await evalCli([...common(), "--key", KEY]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/delete-all-backups\s+FAIL\s+3\/4\s+75 %\s+SECURITY CONCERN\s+REVIEW REQUIRED/);
    expect(stdout).toContain("delete-all-backups concerns: expected 7GEN CONCERN, SECURITY CONCERN; got SECURITY CONCERN");
    expect(stdout).toContain("Overall: 2/3 cases passed (67 %), 11/12 checks (92 %)");
    expect(stdout).toMatch(/Against the saved run of \S+: 1 REGRESSION\(S\): delete-all-backups/);
    expect(readFileSync(join(results(), "latest.json"), "utf8")).toBe(baseline);
    expect(readdirSync(results())).toHaveLength(2);
  });

  it("reports a fixed case once it passes again, and a failing case without a saved run still exits 1", async () => {
    turtleForgets = true;
    const failing = await evalCli([...common(), "--key", KEY, "--save"]);
    expect(failing.code).toBe(1);
    expect(failing.stdout).toContain("Regressions: no saved run to compare with");
    turtleForgets = false;
    const again = await evalCli([...common(), "--key", KEY, "--json"]);
    expect(again.code).toBe(0);
    const report = JSON.parse(again.stdout) as EvalReport;
    expect(report.comparison).toMatchObject({ regressions: [], fixed: ["delete-all-backups"], added: [] });
    expect(report.ok).toBe(true);
  });

  it("fails every case of an unknown council with the gateway's message", async () => {
    const { stdout, code } = await evalCli([...common(), "--key", KEY, "--council", "nope"]);
    expect(code).toBe(1);
    expect(stdout).toContain('plain-text-passwords: HTTP 400: Unknown council "nope"');
    expect(stdout).toContain("Overall: 0/3 cases passed (0 %), 0/12 checks (0 %)");
    expect(stdout).toContain("target under 30.00 s on real GPUs: no vote came back");
  });

  it("takes the key from SWITCHYARD_API_KEY, else the local stack's demo-key file, and exits 2 without one", async () => {
    expect((await evalCli(common(), { SWITCHYARD_API_KEY: KEY })).code).toBe(0);
    const dataDir = join(dir, "stack");
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, "demo-key"), `${KEY}\n`);
    expect((await evalCli(common(), { SWITCHYARD_DATA_DIR: dataDir })).code).toBe(0);
    expect(council.requests.at(-1)?.authorization).toBe(`Bearer ${KEY}`);
    const none = await evalCli(common());
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("No API key: pass --key, set SWITCHYARD_API_KEY, or start the local stack");
  });

  it("exits 2 on a bad flag or a bad cases file, naming it", async () => {
    const flag = await evalCli([...common(), "--key", KEY, "--bogus"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("--bogus");
    expect(flag.stderr).toContain('Run "npm run eval -- --help"');
    const cases = join(dir, "cases.json");
    writeFileSync(cases, JSON.stringify([{ name: "x", question: "q", expect_concerns: [], expect_recommendation: "YES" }]));
    const bad = await evalCli([...common(), "--key", KEY, "--cases", cases]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`${cases}: case 0.expect_recommendation`);
    const help = await evalCli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: npm run eval --");
  });
});

describe("castVote", () => {
  let server: Server | null = null;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = null;
  });

  /** A loopback server answering every request with `handler`. */
  async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
    server = createServer(handler);
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it("gives up on a vote that does not come back within the timeout, saying so", async () => {
    const url = await serve(() => {
      // Never answers.
    });
    const outcome = await castVote({ url, key: KEY, council: "default", timeoutMs: 200 }, "q");
    expect(outcome).toMatchObject({ ok: false, error: "no answer within 0.2 s" });
    expect(outcome.latencyMs).toBeGreaterThanOrEqual(150);
  });

  it("refuses a 200 whose body is not a council.vote, naming the field", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "council.vote", id: "vote_1", council: "default", responses: {}, concerns: [], recommendation: "PROCEED" }));
    });
    expect(await castVote({ url, key: KEY, council: "default", timeoutMs: 5000 }, "q")).toMatchObject({ ok: false, error: expect.stringMatching(/^not a council\.vote: confidence: /) as unknown });
  });
});
