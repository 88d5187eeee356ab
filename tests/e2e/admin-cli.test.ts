/**
 * End to end: the admin CLI, run as a separate process exactly as `npm run admin` runs it, against
 * the real local stack's admin API (wrangler dev + Postgres + Redis, started as `npm start` does).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Stack } from "../../dev/stack.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";

const run = promisify(execFile);
let started: TestStack;
let stack: Stack;
let dataDir: string;

beforeAll(async () => {
  started = await startTestStack("admin");
  ({ stack, dataDir } = started);
}, 120_000);

afterAll(async () => {
  await started?.close();
});

interface Result {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs the CLI against the stack; `withCredentials: false` leaves --url/--token out. */
async function cli(args: string[], opts: { withCredentials?: boolean; env?: Record<string, string> } = {}): Promise<Result> {
  const credentials = opts.withCredentials === false ? [] : ["--url", stack.gatewayUrl, "--token", stack.adminToken];
  try {
    const { stdout, stderr } = await run(process.execPath, ["worker/cli/admin.ts", ...args, ...credentials], {
      env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: "", SWITCHYARD_URL: "", SWITCHYARD_DATA_DIR: join(dataDir, "nowhere"), ...opts.env },
    });
    return { stdout: stdout.trim(), stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout.trim(), stderr: e.stderr, code: e.code };
  }
}

/** Runs the CLI and expects success. */
async function ok(args: string[]): Promise<Result> {
  const result = await cli(args);
  expect({ args, code: result.code, stderr: result.code === 0 ? "" : result.stderr }).toEqual({ args, code: 0, stderr: "" });
  return result;
}

async function modelsStatus(key: string): Promise<number> {
  const res = await fetch(`${stack.gatewayUrl}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
  await res.arrayBuffer();
  return res.status;
}

/** The rows of a printed table (header first), split on the two-space column gaps. */
function rows(table: string): string[][] {
  return table.split("\n").map((line) => line.trim().split(/\s{2,}/));
}

describe("the admin CLI against the local stack", () => {
  it("creates a tenant, environment and key that works, lists them as tables, and revokes the key within 5 s", async () => {
    const tenantId = (await ok(["tenant", "create", "--name", "CLI Corp", "--plan", "pro"])).stdout;
    expect(tenantId).toMatch(/^ten_[0-9a-f]{20}$/);
    const envId = (await ok(["env", "create", "--tenant", tenantId, "--name", "prod", "--region", "local"])).stdout;
    expect(envId).toMatch(/^env_/);

    const created = await ok(["key", "create", "--env", envId, "--name", "backend", "--scopes", "chat,embeddings"]);
    const key = created.stdout;
    expect(key).toMatch(/^sk-sy-[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toContain("only time the full key is shown");
    expect(created.stderr).not.toContain(key);
    const keyId = /^id\s+(key_[0-9a-f]+)$/m.exec(created.stderr)?.[1] ?? "";
    expect(keyId).toMatch(/^key_/);
    expect(await modelsStatus(key)).toBe(200);

    const tenants = rows((await ok(["tenant", "list", "--all"])).stdout);
    expect(tenants[0]).toEqual(["ID", "NAME", "PLAN", "STATUS", "CREATED"]);
    expect(tenants).toContainEqual([tenantId, "CLI Corp", "pro", "active", expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)]);
    // Columns are aligned: every row has its second column at the same offset.
    const lines = (await ok(["tenant", "list"])).stdout.split("\n");
    const offset = (lines[0] ?? "").indexOf("NAME");
    for (const line of lines.slice(1)) expect(line.slice(offset - 2, offset)).toBe("  ");

    const envs = rows((await ok(["env", "list", "--tenant", tenantId])).stdout);
    expect(envs.slice(1)).toEqual([[envId, tenantId, "prod", "local", expect.any(String)]]);
    const keys = (await ok(["key", "list", "--env", envId])).stdout;
    expect(keys).not.toContain(key);
    expect(rows(keys).slice(1)).toEqual([[keyId, key.slice(0, 12), "backend", envId, "active", "chat,embeddings", "all", "-"]]);

    // A paged list says how to get the next page.
    await ok(["env", "create", "--tenant", tenantId, "--name", "staging"]);
    const paged = await ok(["env", "list", "--tenant", tenantId, "--limit", "1"]);
    expect(rows(paged.stdout)).toHaveLength(2);
    expect(paged.stderr).toMatch(/More results: add --cursor \S+/);

    const revoked = await ok(["key", "revoke", keyId]);
    expect(revoked.stdout).toMatch(/^status\s+revoked$/m);
    const started = Date.now();
    while ((await modelsStatus(key)) !== 401) {
      expect(Date.now() - started).toBeLessThan(5_000);
      await new Promise((r) => setTimeout(r, 100));
    }

    const audit = rows((await ok(["audit", "--target", keyId])).stdout);
    expect(audit[0]).toEqual(["AT", "ACTOR", "ACTION", "TARGET", "TENANT", "RESULT"]);
    expect(audit.slice(1).map((r) => r.slice(1, 5))).toEqual([
      ["admin-token", "api_key.revoke", `api_key:${keyId}`, tenantId],
      ["admin-token", "api_key.create", `api_key:${keyId}`, tenantId],
    ]);
  });

  it("sets limits and budgets and shows the counters", async () => {
    const tenantId = (await ok(["tenant", "create", "--name", "Quota Co"])).stdout;
    const envId = (await ok(["env", "create", "--tenant", tenantId, "--name", "prod"])).stdout;
    const limits = rows((await ok(["limits", "set", "environment", envId, "--rpm", "120", "--tpm", "50000"])).stdout);
    expect(limits).toContainEqual(["rpm", expect.any(String), "120", "120"]);
    const budgetId = (await ok(["budget", "add", "environment", envId, "--kind", "tokens", "--period", "month", "--amount", "1000000"])).stdout;
    expect(budgetId).toMatch(/^bud_/);
    expect(rows((await ok(["budget", "list", "environment", envId])).stdout).slice(1)).toEqual([[budgetId, "environment", envId, "tokens", "month", "1000000"]]);
    const counters = rows((await ok(["counters", "environment", envId])).stdout);
    expect(counters[0]).toEqual(["BUDGET", "KIND", "PERIOD", "USED", "AMOUNT", "REMAINING"]);
    expect(counters[1]).toEqual([budgetId, "tokens", "month", "0", "1000000", "1000000"]);
    await ok(["limits", "clear", "environment", envId]);
    expect((await ok(["budget", "delete", budgetId])).stdout).toBe(`Deleted budget ${budgetId}.`);
  });

  it("reads the token from the data dir `npm start` writes, and prints the API's error with exit 1", async () => {
    const viaFile = await cli(["tenant", "list", "--url", stack.gatewayUrl], { withCredentials: false, env: { SWITCHYARD_DATA_DIR: dataDir } });
    expect(viaFile.code).toBe(0);
    expect(viaFile.stdout).toContain("ten_demo");

    const wrong = await cli(["tenant", "list", "--url", stack.gatewayUrl, "--token", "wrong"], { withCredentials: false });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("401 invalid_api_key");
    const missing = await cli(["tenant", "show", "ten_missing"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("No tenant with id ten_missing");
  });

  it("manages the model catalogue and reports usage, as tables and JSON", async () => {
    await ok(["model", "set", "cli-model", "--context", "4096", "--input-price", "0.5", "--output-price", "1.5"]);
    const models = (await ok(["model", "list"])).stdout;
    expect(models).toMatch(/cli-model\s+chat\s+4096\s+0\.5\s+1\.5/);
    expect(models).toContain("sim-llama-8b");
    const removed = JSON.parse((await ok(["model", "remove", "cli-model", "--json"])).stdout) as { active: boolean };
    expect(removed.active).toBe(false);

    // One metered request with the demo key, written to Postgres by the scheduled job.
    const res = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 3 }),
    });
    const usage = ((await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
    await stack.runScheduled();
    const report = JSON.parse((await ok(["usage", "--tenant", "ten_demo", "--group-by", "model", "--json"])).stdout) as {
      totals: { requests: number; prompt_tokens: number; completion_tokens: number };
    };
    expect(report.totals).toMatchObject({ requests: 1, prompt_tokens: usage.prompt_tokens, completion_tokens: 3 });
    const human = (await ok(["usage", "--tenant", "ten_demo", "--group-by", "model"])).stdout;
    expect(human).toContain("sim-llama-8b");
    expect(human).toMatch(/Total: 1 requests/);
  });

  it("lists the fleet's nodes and regions, and drains a node so it gets no new requests until undrained", async () => {
    const nodes = rows((await ok(["node", "list"])).stdout);
    expect(nodes[0]).toEqual(["ID", "REGION", "STATUS", "REPORTED", "STALE", "IN FLIGHT", "WAITING", "KV", "TTFT", "CIRCUIT"]);
    const node = nodes.find((r) => r[0] === stack.nodeId);
    expect(node?.slice(0, 5)).toEqual([stack.nodeId, "local", "active", "ready", "no"]);
    expect(node?.[5]).toMatch(/^\d+\/\d+$/);
    expect(node?.[9]).toBe("closed");
    expect(rows((await ok(["region", "list"])).stdout).find((r) => r[0] === "local")?.at(-1)).toBe("1/1");

    // A tenant of its own, so the demo tenant's usage stays as the other tests expect it.
    const tenantId = (await ok(["tenant", "create", "--name", "Fleet Co"])).stdout;
    const envId = (await ok(["env", "create", "--tenant", tenantId, "--name", "prod", "--strategy", "least-load"])).stdout;
    const key = (await ok(["key", "create", "--env", envId, "--name", "app"])).stdout;
    const chatStatus = async () => {
      const res = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
      });
      await res.arrayBuffer();
      return res.status;
    };
    const statusBecomes = async (want: number) => {
      const started = Date.now();
      while ((await chatStatus()) !== want) {
        expect(Date.now() - started).toBeLessThan(5_000);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await statusBecomes(200);
    try {
      expect((await ok(["node", "drain", stack.nodeId])).stdout).toMatch(/^status\s+draining$/m);
      await statusBecomes(503);
      expect(rows((await ok(["node", "list"])).stdout).find((r) => r[0] === stack.nodeId)?.[2]).toBe("draining");
      expect((await ok(["node", "show", stack.nodeId])).stdout).toMatch(/Health history \(newest first, last \d+\):\n(AT\s+STATUS|\(none\))/);
    } finally {
      await ok(["node", "undrain", stack.nodeId]);
    }
    await statusBecomes(200);
    const audit = rows((await ok(["audit", "--target", stack.nodeId])).stdout);
    expect(audit.slice(1, 3).map((r) => r[2])).toEqual(["node.undrain", "node.drain"]);
  });
});
