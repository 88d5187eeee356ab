import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { NODE_HEADER, importSigningKey, signRequest } from "../../schema/contracts/signing.ts";
import { startFakeOllama } from "../support/fake-ollama.ts";
import { TEST_NODE, TEST_SECRET, useBackplane } from "../support/backplane-harness.ts";

const kit = useBackplane();

async function signed(baseUrl: string, method: string, path: string, body = ""): Promise<Response> {
  const key = await importSigningKey(TEST_SECRET);
  const headers = await signRequest(key, method, path, body);
  return fetch(baseUrl + path, { method, headers: { [NODE_HEADER]: TEST_NODE, "content-type": "application/json", ...headers }, body: body === "" ? undefined : body });
}

describe("management routes", () => {
  it("refuse unsigned calls like every other gateway route", async () => {
    const sim = await kit.sim();
    const node = await kit.daemon([{ kind: "sim", url: sim.url }]);
    const res = await fetch(`${node.url}/management/system/resources`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
  });

  it("report the host's CPU, memory and disk, and say why there are no GPU facts", async () => {
    const sim = await kit.sim();
    const node = await kit.daemon([{ kind: "sim", url: sim.url }], { nvidiaSmiPath: "/nonexistent/nvidia-smi" });
    const res = await signed(node.url, "GET", "/management/system/resources");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { cpu: { cores: number }; memory: { totalBytes: number }; disk: { totalBytes: number }; gpus: unknown[]; gpuError: string };
    expect(body.cpu.cores).toBeGreaterThan(0);
    expect(body.memory.totalBytes).toBeGreaterThan(0);
    expect(body.disk.totalBytes).toBeGreaterThan(0);
    expect(body.gpus).toEqual([]);
    expect(body.gpuError).toContain("nvidia-smi");
  });

  it("list, show, pull with progress and delete models through an Ollama engine", async () => {
    const ollama = await startFakeOllama({ models: [{ name: "llama3.2:3b" }], pullStepMs: 5 });
    kit.defer(() => ollama.close());
    const node = await kit.daemon([{ id: "ol", kind: "ollama", url: ollama.url }]);

    const list = (await (await signed(node.url, "GET", "/management/models")).json()) as { engines: { id: string; models: string[] }[]; ollama: { engine: string; models: { name: string }[] }[] };
    expect(list.engines).toEqual([{ id: "ol", kind: "ollama", healthy: true, models: ["llama3.2:3b"] }]);
    expect(list.ollama[0]?.models.map((m) => m.name)).toEqual(["llama3.2:3b"]);

    const show = await signed(node.url, "GET", "/management/models/llama3.2%3A3b");
    expect(show.status).toBe(200);
    expect(await show.json()).toHaveProperty("details");

    const pull = await signed(node.url, "POST", "/management/models/pull", JSON.stringify({ model: "qwen3:0.6b" }));
    expect(pull.status).toBe(200);
    expect(pull.headers.get("content-type")).toBe("application/x-ndjson");
    const lines = (await pull.text()).trim().split("\n").map((l) => JSON.parse(l) as { status?: string; completed?: number });
    expect(lines[0]?.status).toBe("pulling manifest");
    expect(lines.some((l) => typeof l.completed === "number")).toBe(true);
    expect(lines.at(-1)?.status).toBe("success");
    // The pull refreshes the engine's model list (and the next heartbeat carries it).
    await expect.poll(() => node.pool.models(), { timeout: 2_000 }).toContain("qwen3:0.6b");

    const removed = await signed(node.url, "DELETE", "/management/models/qwen3%3A0.6b");
    expect(removed.status).toBe(200);
    const missing = await signed(node.url, "DELETE", "/management/models/qwen3%3A0.6b");
    expect(missing.status).toBe(404);
  });

  it("answer 409 naming the fix when no engine can manage models", async () => {
    const sim = await kit.sim();
    const node = await kit.daemon([{ kind: "sim", url: sim.url }]);
    const res = await signed(node.url, "POST", "/management/models/pull", JSON.stringify({ model: "x" }));
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("Ollama engine");
  });
});

describe("HTTPS", () => {
  it("serves HTTPS with the given certificate and key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sy-tls-"));
    kit.defer(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
    const sim = await kit.sim();
    const node = await kit.daemon([{ kind: "sim", url: sim.url }], { tlsCertFile: cert, tlsKeyFile: key, host: "0.0.0.0" });
    expect(node.url.startsWith("https://")).toBe(true);
    const status = await new Promise<number>((resolve, reject) => {
      request(`${node.url}/health`, { ca: readFileSync(cert) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on("error", reject)
        .end();
    });
    expect(status).toBe(200);
    await expect(fetch(node.url.replace("https:", "http:") + "/health")).rejects.toThrow();
  });
});
