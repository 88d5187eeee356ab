/** `model set --alias`: how the admin CLI sends a model's aliases (the API's checks are in tests/worker/model-aliases.test.ts). */
import { execFile } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const run = promisify(execFile);
let gateway: Server;
let url: string;
let seen: { method: string; url: string; body: Record<string, unknown> }[];

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["worker/cli/admin.ts", ...args, "--url", url, "--token", "t"], { env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: "", SWITCHYARD_URL: "" } });
    return { code: 0, stdout: stdout.trim(), stderr };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { code: e.code, stdout: e.stdout.trim(), stderr: e.stderr };
  }
}

beforeEach(async () => {
  seen = [];
  // Answers like the admin API: the model as PUT /admin/models/:id shows it.
  gateway = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString("utf8")));
    req.on("end", () => {
      const parsed = JSON.parse(body || "{}") as Record<string, unknown>;
      seen.push({ method: req.method ?? "", url: req.url ?? "", body: parsed });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "catalogue_model", id: "phi3:latest", aliases: parsed.aliases ?? [] }));
    });
  });
  gateway.listen(0, "127.0.0.1");
  await once(gateway, "listening");
  url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
});

afterEach(() => {
  gateway.close();
});

describe("model set --alias", () => {
  it("sends every --alias given, repeated or as a comma list, as the model's whole alias list", async () => {
    expect((await cli(["model", "set", "phi3:latest", "--alias", "phi3", "--alias", "phi3-mini"])).code).toBe(0);
    expect((await cli(["model", "set", "phi3:latest", "--alias", "phi3,phi3-mini, phi"])).code).toBe(0);
    expect(seen.map((s) => [s.method, s.url])).toEqual([
      ["PUT", "/admin/models/phi3%3Alatest"],
      ["PUT", "/admin/models/phi3%3Alatest"],
    ]);
    // Changing a model sends only what changes: no --context needed.
    expect(seen[0]?.body).toEqual({ aliases: ["phi3", "phi3-mini"] });
    expect(seen[1]?.body).toEqual({ aliases: ["phi3", "phi3-mini", "phi"] });
  });

  it("clears the aliases with --alias none, and leaves them alone without --alias", async () => {
    expect((await cli(["model", "set", "phi3:latest", "--alias", "none"])).code).toBe(0);
    expect((await cli(["model", "set", "phi3:latest", "--family", "phi"])).code).toBe(0);
    expect(seen[0]?.body).toEqual({ aliases: [] });
    expect(seen[1]?.body).toEqual({ family: "phi" });
  });

  it("prints the aliases the API answers", async () => {
    const out = await cli(["model", "set", "phi3:latest", "--alias", "phi3", "--json"]);
    expect(JSON.parse(out.stdout)).toMatchObject({ id: "phi3:latest", aliases: ["phi3"] });
  });
});
