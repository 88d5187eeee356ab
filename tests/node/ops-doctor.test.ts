import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseConfig, type RawConfig } from "../../backplane/src/config.ts";
import { type Check, formatChecks, runDoctor } from "../../backplane/src/ops/doctor.ts";
import { type SimEngine, startSimEngine } from "../../backplane/src/sim/index.ts";
import { type RecordingGateway, startRecordingGateway } from "../support/recording-gateway.ts";

// `backplane doctor` against real loopback servers: the simulated engine, a small gateway stand-in
// with a controllable Date header, closed ports, openssl-made certificates and stand-in nvidia-smi scripts.

const run = promisify(execFile);
const SECRET = "s".repeat(40);

let dir = "";
let sim: SimEngine | null = null;
let servers: Server[] = [];
let gateways: RecordingGateway[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sy-doctor-"));
});
afterEach(async () => {
  await sim?.close();
  sim = null;
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  servers = [];
  await Promise.all(gateways.map((g) => g.close()));
  gateways = [];
  await rm(dir, { recursive: true, force: true });
});

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A port nothing listens on: bound once, then released. */
async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/** A gateway stand-in whose clock is `skewMs` off ours (in its Date header). */
function startGateway(skewMs: number): Promise<string> {
  return listen((_req, res) => {
    res.setHeader("date", new Date(Date.now() + skewMs).toUTCString());
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"status":"ok"}');
  });
}

/** The recording gateway (signatures verified like the worker's) knowing `secret`, its clock off by `clockOffsetSeconds`. */
async function recordingGateway(secret: string, clockOffsetSeconds = 0): Promise<RecordingGateway> {
  const gateway = await startRecordingGateway(secret, { clockOffsetSeconds });
  gateways.push(gateway);
  return gateway;
}

/** Runs `backplane doctor` as a process with only `args` (no BACKPLANE_* from this environment). */
async function doctorProcess(args: string[]): Promise<{ code: number; stdout: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("BACKPLANE_")));
  try {
    const { stdout } = await run(process.execPath, ["backplane/src/main.ts", "doctor", ...args], { env, cwd: join(import.meta.dirname, "../..") });
    return { code: 0, stdout };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? "" };
  }
}

async function script(name: string, body: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`);
  await chmod(path, 0o755);
  return path;
}

function config(raw: RawConfig) {
  return parseConfig({
    nodeId: "gpu-1",
    region: "us-east",
    secret: SECRET,
    nvidiaSmiPath: join(dir, "no-nvidia-smi"),
    ...raw,
  });
}

const named = (checks: Check[], name: string): Check => {
  const found = checks.find((c) => c.name === name);
  if (!found) throw new Error(`no check named ${name} in ${checks.map((c) => c.name).join(", ")}`);
  return found;
};

async function openssl(args: string[]): Promise<void> {
  await run("openssl", args, { cwd: dir });
}

/** A self-signed P-256 certificate for `host`, valid `days` days; returns the cert and key paths. */
async function selfSigned(name: string, host: string, days: number): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", String(days), "-subj", `/CN=${host}`, "-addext", `subjectAltName=DNS:${host}`]);
  return { cert, key };
}

describe("backplane doctor", () => {
  it("reports a running engine as ok and an engine on a closed port as a failure with the fix", async () => {
    sim = await startSimEngine({ port: 0, ttftMs: 0, interTokenMs: 0, apiKey: "engine-key" });
    const closed = await closedPortUrl();
    const checks = await runDoctor(config({
      engines: [`kind=sim,url=${sim.url},id=sim`, `kind=openai,url=${sim.url},api-key=engine-key,id=oai`, `kind=vllm,url=${closed},id=down`],
    }));
    expect(named(checks, "engine sim")).toMatchObject({ status: "ok", fix: null });
    expect(named(checks, "engine sim").detail).toContain("answered 200 on /health");
    expect(named(checks, "engine oai")).toMatchObject({ status: "ok" });
    expect(named(checks, "engine oai").detail).toContain("/v1/models");
    const down = named(checks, "engine down");
    expect(down).toMatchObject({ status: "fail", fix: "start the engine / check --engine url" });
    expect(down.detail).toContain("ECONNREFUSED");
  });

  it("fails an OpenAI-style engine that refuses the api key, pointing at api-key=", async () => {
    sim = await startSimEngine({ port: 0, apiKey: "engine-key" });
    const checks = await runDoctor(config({ engines: `kind=openai,url=${sim.url},api-key=wrong,id=oai` }));
    expect(named(checks, "engine oai")).toMatchObject({ status: "fail", fix: "check the engine's api-key= in --engine" });
    expect(named(checks, "engine oai").detail).toContain("answered 401");
  });

  it("probes an Ollama engine at /api/version", async () => {
    const paths: string[] = [];
    const ollama = await listen((req, res) => {
      paths.push(req.url ?? "");
      res.writeHead(req.url === "/api/version" ? 200 : 404, { "content-type": "application/json" });
      res.end(req.url === "/api/version" ? '{"version":"0.12.0"}' : '{"error":"not found"}');
    });
    const checks = await runDoctor(config({ engines: `kind=ollama,url=${ollama},id=llama` }));
    expect(named(checks, "engine llama").status).toBe("ok");
    expect(paths).toEqual(["/api/version"]);
  });

  it("warns that heartbeats are off when no gateway URL is set", async () => {
    const checks = await runDoctor(config({ engines: `kind=vllm,url=${await closedPortUrl()}` }));
    expect(named(checks, "gateway")).toMatchObject({ status: "warn", fix: "set --gateway-url / BACKPLANE_GATEWAY_URL" });
    expect(named(checks, "gateway").detail).toContain("heartbeats");
    expect(checks.some((c) => c.name === "clock")).toBe(false);
    expect(checks.some((c) => c.name === "secret")).toBe(false);
  });

  it("measures clock skew from the gateway's Date header: ok when close, warn past 5 s, fail past 30 s", async () => {
    const engines = `kind=vllm,url=${await closedPortUrl()}`;
    const inSync = await runDoctor(config({ engines, gatewayUrl: await startGateway(0) }));
    expect(named(inSync, "gateway").status).toBe("ok");
    expect(named(inSync, "clock")).toMatchObject({ status: "ok", fix: null });

    const warn = named(await runDoctor(config({ engines, gatewayUrl: await startGateway(-10_000) })), "clock");
    expect(warn.status).toBe("warn");
    expect(warn.detail).toMatch(/clock is (9|10|11)\.\d s ahead of the gateway's/);
    expect(warn.fix).toContain("NTP");

    const fail = named(await runDoctor(config({ engines, gatewayUrl: await startGateway(40_000) })), "clock");
    expect(fail.status).toBe("fail");
    expect(fail.detail).toMatch(/behind the gateway's/);
    expect(fail.fix).toContain("chrony");
  });

  it("reports every invalid setting in one run, each naming the setting and what to do", async () => {
    const { code, stdout } = await doctorProcess([
      "--node-id", "GPU 1",
      "--port", "99999",
      "--engine", "kind=vllm,url=not-a-url",
      "--engine", "kind=vllm,url=http://127.0.0.1:8000,max-concurrency=0",
      "--tls-cert", "/etc/switchyard/tls.crt",
    ]);
    expect(code).toBe(1);
    const failures = stdout.split("\n").filter((l) => l.startsWith("FAIL"));
    const expected = [
      /--engine \/ BACKPLANE_ENGINES: engine 1 \(vllm-0\): url/,
      /--engine \/ BACKPLANE_ENGINES: engine 2 \(vllm-1\): maxConcurrency/,
      /--port \/ BACKPLANE_PORT:/,
      /--tls-cert \/ BACKPLANE_TLS_CERT: set both --tls-cert and --tls-key/,
      /--node-id \/ BACKPLANE_NODE_ID: must be 1-63 lowercase/,
      /--region \/ BACKPLANE_REGION: is required/,
      /--secret \/ BACKPLANE_SECRET: is required/,
    ];
    for (const line of expected) expect(failures.some((f) => line.test(f)), `no FAIL line matching ${line} in:\n${stdout}`).toBe(true);
    expect(failures).toHaveLength(expected.length);
    // Each with what to do, under it.
    expect(stdout).toMatch(/fix: set --secret \(or BACKPLANE_SECRET\): node signing secret/);
    expect(stdout).toMatch(/fix: correct --port \(or BACKPLANE_PORT\): listen port/);
    expect(stdout).toMatch(/WARN\s+checks\s+engines, gateway, node secret, TLS and GPU were not checked/);
    expect(stdout).toContain("7 failures");
  });

  it("says the node secret is accepted by a gateway that knows it, without sending a heartbeat", async () => {
    const gateway = await recordingGateway(SECRET);
    const checks = await runDoctor(config({ engines: `kind=vllm,url=${await closedPortUrl()}`, gatewayUrl: gateway.url }));
    expect(named(checks, "secret")).toMatchObject({ status: "ok", detail: "node secret accepted by the gateway (node gpu-1)", fix: null });
    expect(named(checks, "gateway").status).toBe("ok");
    expect(gateway.probes).toEqual(["gpu-1"]);
    expect(gateway.heartbeats).toEqual([]);
    expect(gateway.rejected).toEqual([]);
  });

  it("fails the secret check with the gateway's reason and the command that prints the right secret when the gateway does not know it", async () => {
    const gateway = await recordingGateway("o".repeat(40));
    const checks = await runDoctor(config({ engines: `kind=vllm,url=${await closedPortUrl()}`, gatewayUrl: gateway.url }));
    const secret = named(checks, "secret");
    expect(secret.status).toBe("fail");
    expect(secret.detail).toContain("the gateway refused the node secret");
    expect(secret.detail).toContain("Check BACKPLANE_SECRET");
    expect(secret.fix).toContain("--secret / BACKPLANE_SECRET");
    expect(secret.fix).toContain("npm run admin -- node secret --id gpu-1");
    expect(gateway.rejected).toEqual(["/internal/nodes/probe: mismatch"]);
  });

  it("fails the secret check pointing at NTP when the gateway's clock is more than 60 s away", async () => {
    const gateway = await recordingGateway(SECRET, 90);
    const secret = named(await runDoctor(config({ engines: `kind=vllm,url=${await closedPortUrl()}`, gatewayUrl: gateway.url })), "secret");
    expect(secret.status).toBe("fail");
    expect(secret.detail).toContain("more than 60 s away from the gateway's clock");
    expect(secret.fix).toContain("NTP");
  });

  it("fails an unreachable gateway with the setting to check", async () => {
    const checks = await runDoctor(config({ engines: `kind=vllm,url=${await closedPortUrl()}`, gatewayUrl: await closedPortUrl() }));
    expect(named(checks, "gateway")).toMatchObject({ status: "fail" });
    expect(named(checks, "gateway").fix).toContain("--gateway-url");
    const secret = named(checks, "secret");
    expect(secret.status).toBe("fail");
    expect(secret.detail).toMatch(/node secret could not be checked: .* is unreachable \(.*ECONNREFUSED/);
    expect(secret.fix).toContain("--gateway-url");
  });

  it("warns about a public URL deployed Workers cannot use", async () => {
    const engines = `kind=vllm,url=${await closedPortUrl()}`;
    const http = named(await runDoctor(config({ engines, publicUrl: "http://203.0.113.7:8443" })), "config");
    expect(http.status).toBe("warn");
    expect(http.detail).toContain("node gpu-1 in us-east, public URL http://203.0.113.7:8443");
    const port = named(await runDoctor(config({ engines, publicUrl: "https://node.example.com:8443" })), "config");
    expect(port.status).toBe("warn");
    expect(port.detail).toContain("only reach port 443");
    expect(named(await runDoctor(config({ engines, publicUrl: "https://node.example.com" })), "config").status).toBe("ok");
    expect(named(await runDoctor(config({ engines })), "config").status).toBe("ok");
  });

  it("checks the TLS files: a matching, valid certificate is ok; a foreign key, an unreadable file and expiry are not", async (ctx) => {
    if (!existsSync("/usr/bin/openssl")) ctx.skip("openssl is not installed here");
    const engines = `kind=vllm,url=${await closedPortUrl()}`;
    const good = await selfSigned("good", "node.example.com", 365);
    const tlsConfig = (cert: string, key: string) => config({ engines, host: "0.0.0.0", publicUrl: "https://node.example.com", tlsCertFile: cert, tlsKeyFile: key });

    const ok = named(await runDoctor(tlsConfig(good.cert, good.key)), "tls");
    expect(ok.status).toBe("ok");
    expect(ok.detail).toContain("CN=node.example.com");

    const other = join(dir, "other.key");
    await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", other]);
    expect(named(await runDoctor(tlsConfig(good.cert, other)), "tls")).toMatchObject({ status: "fail", fix: "use the private key the certificate was issued for" });

    const missing = named(await runDoctor(tlsConfig(join(dir, "nope.crt"), good.key)), "tls");
    expect(missing.status).toBe("fail");
    expect(missing.detail).toContain("ENOENT");

    const notPem = named(await runDoctor(tlsConfig(good.key, good.key)), "tls");
    expect(notPem.status).toBe("fail");
    expect(notPem.detail).toContain("is not a PEM certificate");

    const short = await selfSigned("short", "node.example.com", 5);
    const soon = named(await runDoctor(tlsConfig(short.cert, short.key)), "tls");
    expect(soon.status).toBe("warn");
    expect(soon.detail).toMatch(/expires in [45] days/);

    const expired = named(await runDoctor(tlsConfig(good.cert, good.key), { now: () => Date.now() + 400 * 86_400_000 }), "tls");
    expect(expired.status).toBe("fail");
    expect(expired.detail).toContain("expired on");

    const wrongHost = await selfSigned("wrong", "other.example.com", 365);
    expect(named(await runDoctor(tlsConfig(wrongHost.cert, wrongHost.key)), "tls").detail).toContain("does not cover node.example.com");
  });

  it("warns when nvidia-smi is missing, fails when it errors, and lists the GPUs when it works", async () => {
    const engines = `kind=vllm,url=${await closedPortUrl()}`;
    const missing = named(await runDoctor(config({ engines })), "gpu");
    expect(missing.status).toBe("warn");
    expect(missing.fix).toContain("--nvidia-smi");

    const broken = await script("nvidia-smi-broken", `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."; exit 9`);
    const failed = named(await runDoctor(config({ engines, nvidiaSmiPath: broken })), "gpu");
    expect(failed.status).toBe("fail");
    expect(failed.detail).toContain("couldn't communicate with the NVIDIA driver");

    const working = await script("nvidia-smi", [
      `[ "$1" = "-L" ] || exit 2`,
      `echo "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-0b3c3a52-5d1f-4c63-9c5e-1b0cf3b2a0d1)"`,
      `echo "GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-7f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b)"`,
    ].join("\n"));
    expect(named(await runDoctor(config({ engines, nvidiaSmiPath: working })), "gpu")).toMatchObject({ status: "ok", detail: "2 GPUs: NVIDIA A100-SXM4-80GB, NVIDIA A100-SXM4-80GB" });
  });

  it("formats one line per check with its fix under it, and a count", () => {
    const text = formatChecks([
      { name: "config", status: "ok", detail: "node gpu-1", fix: null },
      { name: "engine vllm-0", status: "fail", detail: "unreachable", fix: "start the engine / check --engine url" },
      { name: "gateway", status: "warn", detail: "no gateway URL", fix: "set --gateway-url" },
    ]);
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ok\s+config\s+node gpu-1$/);
    expect(lines[1]).toMatch(/^FAIL\s+engine vllm-0\s+unreachable$/);
    expect(lines[2]).toMatch(/^\s+fix: start the engine \/ check --engine url$/);
    expect(lines[3]).toMatch(/^WARN\s+gateway\s+no gateway URL$/);
    expect(lines[4]).toMatch(/^\s+fix: set --gateway-url$/);
    expect(lines.at(-1)).toBe("1 ok, 1 warning, 1 failure");
  });
});
