/** The admin CLI's --priority flags (docs/priority.md), against a loopback server that records the calls. */
import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const dataDir = mkdtempSync(join(tmpdir(), "switchyard-cli-priority-"));
const seen: { method: string; url: string; body: Record<string, unknown> }[] = [];
let gateway: Server;
let url: string;

async function admin(args: string[]): Promise<{ stderr: string; code: number }> {
  try {
    const { stderr } = await run(process.execPath, ["worker/cli/admin.ts", ...args, "--url", url, "--token", "t"], {
      env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: "", SWITCHYARD_URL: "", SWITCHYARD_DATA_DIR: dataDir },
    });
    return { stderr, code: 0 };
  } catch (err) {
    const e = err as { stderr: string; code: number };
    return { stderr: e.stderr, code: e.code };
  }
}

beforeAll(async () => {
  gateway = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString("utf8")));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", body: body ? (JSON.parse(body) as Record<string, unknown>) : {} });
      const answer = req.url?.startsWith("/admin/keys") ? { object: "api_key", id: "key_1", key: "sk-sy-x", prefix: "sk-sy-x" } : { object: "environment", id: "env_1" };
      res.writeHead(req.method === "POST" ? 201 : 200, { "content-type": "application/json" }).end(JSON.stringify(answer));
    });
  });
  gateway.listen(0, "127.0.0.1");
  await once(gateway, "listening");
  url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
});

afterAll(() => {
  gateway.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("--priority", () => {
  it("sets an environment's and a key's class, clears one with none, and refuses other values before any call", async () => {
    expect((await admin(["env", "update", "env_1", "--priority", "interactive"])).code).toBe(0);
    expect(seen.at(-1)).toEqual({ method: "PATCH", url: "/admin/environments/env_1", body: { priority_class: "interactive" } });
    expect((await admin(["key", "create", "--env", "env_1", "--name", "nightly", "--priority", "batch"])).code).toBe(0);
    expect(seen.at(-1)).toMatchObject({ method: "POST", url: "/admin/keys", body: { environment_id: "env_1", name: "nightly", priority_class: "batch" } });
    expect((await admin(["key", "update", "key_1", "--priority", "none"])).code).toBe(0);
    expect(seen.at(-1)).toEqual({ method: "PATCH", url: "/admin/keys/key_1", body: { priority_class: null } });

    const calls = seen.length;
    const wrong = await admin(["key", "update", "key_1", "--priority", "urgent"]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain("--priority must be interactive, standard, batch or none");
    const nothing = await admin(["key", "update", "key_1"]);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain("Nothing to update");
    expect(seen).toHaveLength(calls);
  });
});
