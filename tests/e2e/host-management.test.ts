/**
 * End to end: managing a GPU host's models and reading its resources through the gateway's admin
 * API and the admin CLI, on the local stack (wrangler dev + Postgres + Redis) with three backplanes:
 * `gpu-ollama` fronts an Ollama engine (the loopback fake of Ollama's API, as Ollama cannot run
 * here) and a fake nvidia-smi, `gpu-plain` only a simulated vLLM engine, and `gpu-down` is killed.
 */
import { execFile } from "node:child_process";
import { createServer, type Server, type Socket } from "node:net";
import { promisify } from "node:util";
import { and, eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type NodeDb } from "../../dev/db.ts";
import type { Stack } from "../../dev/stack.ts";
import { parseTopology } from "../../dev/topology.ts";
import { auditLogs, nodes } from "../../schema/tables/index.ts";
import { startTestStack, type TestStack } from "../support/e2e-stack.ts";
import { createFakeNvidiaSmi, type FakeNvidiaSmi } from "../support/fake-nvidia-smi.ts";
import { startFakeOllama, type FakeOllama } from "../support/fake-ollama.ts";

const OLLAMA_NODE = "gpu-ollama";
const PLAIN_NODE = "gpu-plain";
const DOWN_NODE = "gpu-down";
/** A registered node whose host accepts connections and never answers. */
const STALLED_NODE = "gpu-stalled";
const ENGINE = "ollama-0";
/** A Hugging Face model through Ollama: its name has both `/` and `:`. */
const HF_MODEL = "hf.co/bartowski/Qwen3-0.6B-GGUF:Q4_K_M";
const FAILING = "huge:70b";
/** Ollama's progress lines of one pull come this far apart (fake-ollama.ts sends seven). */
const STEP_MS = 150;

let started: TestStack;
let stack: Stack;
let db: NodeDb;
let ollama: FakeOllama;
let nvidiaSmi: FakeNvidiaSmi;
let stalled: Server;
const stalledSockets = new Set<Socket>();

interface Answer<T> {
  status: number;
  body: T;
}

async function admin<T = Record<string, unknown>>(method: string, path: string, opts: { body?: unknown; token?: string } = {}): Promise<Answer<T>> {
  const res = await fetch(`${stack.gatewayUrl}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${opts.token ?? stack.adminToken}`, "content-type": "application/json" },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

interface ErrorBody {
  error: { message: string; type: string; code: string };
}

/** One server-sent event as the operator's client reads it, with when it arrived. */
interface Received {
  event: string | null;
  data: Record<string, unknown>;
  at: number;
}

/** Reads the SSE answer of a pull event by event (LF framing, as the gateway sends it). */
async function readEvents(res: Response, onEvent?: (e: Received) => boolean): Promise<Received[]> {
  const events: Received[] = [];
  let buffer = "";
  if (!res.body) throw new Error("no body");
  for await (const chunk of res.body.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? null;
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (data === undefined) continue;
      const received = { event, data: JSON.parse(data) as Record<string, unknown>, at: Date.now() };
      events.push(received);
      if (onEvent?.(received) === true) return events;
    }
  }
  return events;
}

function pull(body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${stack.gatewayUrl}/admin/nodes/${OLLAMA_NODE}/models/pull`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

interface CliResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs the admin CLI as `npm run admin` does (stderr is a pipe here, not a terminal). */
async function cli(args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["worker/cli/admin.ts", ...args, "--url", stack.gatewayUrl, "--token", stack.adminToken], {
      env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: "", SWITCHYARD_URL: "" },
    });
    return { stdout: stdout.trim(), stderr, code: 0 };
  } catch (err) {
    const failed = err as { stdout?: string; stderr?: string; code?: number };
    return { stdout: (failed.stdout ?? "").trim(), stderr: failed.stderr ?? "", code: failed.code ?? -1 };
  }
}

async function auditRows(actions: string[]) {
  return db.db.select().from(auditLogs).where(and(eq(auditLogs.targetId, OLLAMA_NODE), inArray(auditLogs.action, actions)));
}

beforeAll(async () => {
  ollama = await startFakeOllama({
    models: [{ name: "llama3.2:3b", contextLength: 131072 }, { name: HF_MODEL, parameterSize: "596M" }],
    pullErrors: { [FAILING]: "max retries exceeded: unexpected EOF" },
    pullStepMs: STEP_MS,
  });
  // One L4 at 37%, 10 GiB of 22.5 GiB used (MiB, as --format=csv,nounits prints them).
  nvidiaSmi = await createFakeNvidiaSmi({ stdout: "0, NVIDIA L4, GPU-5f2c, 37, 10240, 23034, 51, 27.50\n" });
  const topology = parseTopology({
    regions: [{ id: "local", name: "Local", latitude: 50.11, longitude: 8.68 }],
    nodes: [
      { id: OLLAMA_NODE, region: "local" },
      { id: PLAIN_NODE, region: "local" },
      { id: DOWN_NODE, region: "local" },
    ],
  });
  // Set after validation: topology files may not replace a node's engines (the stack gives each its
  // simulator), but this host runs Ollama, as an Ollama box would, and has a GPU to report.
  const ollamaNode = topology.nodes.find((n) => n.id === OLLAMA_NODE);
  if (!ollamaNode) throw new Error("topology without the Ollama node");
  ollamaNode.backplaneEnv = { ...ollamaNode.backplaneEnv, BACKPLANE_ENGINES: `kind=ollama,id=${ENGINE},url=${ollama.url}`, BACKPLANE_NVIDIA_SMI: nvidiaSmi.path };
  started = await startTestStack("host", { topology });
  stack = started.stack;
  db = openDb(started.databaseUrl);
  await stack.killNode(DOWN_NODE);
  stalled = createServer((socket) => void stalledSockets.add(socket));
  await new Promise<void>((resolve) => stalled.listen(0, "127.0.0.1", resolve));
  const { port } = stalled.address() as { port: number };
  // Disabled and serving nothing, so routing never picks it; the admin routes still reach it.
  await db.db.insert(nodes).values({ id: STALLED_NODE, regionId: "local", url: `http://127.0.0.1:${port}`, models: [], status: "disabled" });
}, 120_000);

afterAll(async () => {
  for (const socket of stalledSockets) socket.destroy();
  await new Promise<void>((resolve) => (stalled ? stalled.close(() => resolve()) : resolve()));
  await db?.close();
  await started?.close();
  await ollama?.close();
  await nvidiaSmi?.remove();
});

describe("host management through the gateway", () => {
  it("lists what each engine of a node serves and what Ollama keeps on disk", async () => {
    const listed = await admin<{ object: string; node_id: string; data: Record<string, unknown>[]; engines: Record<string, unknown>[] }>("GET", `/nodes/${OLLAMA_NODE}/models`);
    expect(listed.status).toBe(200);
    expect(listed.body).toMatchObject({ object: "list", node_id: OLLAMA_NODE, engines: [{ id: ENGINE, kind: "ollama", disk_listed: true }] });
    expect(listed.body.data).toContainEqual({
      object: "node_model",
      id: HF_MODEL,
      engine: ENGINE,
      engine_kind: "ollama",
      served: true,
      on_disk: true,
      size_bytes: 2_019_393_189,
      modified_at: "2025-10-01T12:00:00.000000000Z",
      digest: expect.any(String) as unknown,
      parameter_size: "596M",
      quantization_level: "Q4_K_M",
    });
    expect(listed.body.data.map((m) => m.id).sort()).toEqual([HF_MODEL, "llama3.2:3b"]);

    const plain = await admin<{ data: Record<string, unknown>[] }>("GET", `/nodes/${PLAIN_NODE}/models`);
    expect(plain.status).toBe(200);
    expect(plain.body.data).toContainEqual(expect.objectContaining({ id: "sim-llama-8b", engine: "sim-0", engine_kind: "sim", served: true, on_disk: null }));
  });

  it("shows a model whose name has ':' and '/' when it is URL-encoded", async () => {
    const shown = await admin<Record<string, unknown>>("GET", `/nodes/${OLLAMA_NODE}/models/${encodeURIComponent(HF_MODEL)}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({
      object: "node_model_info",
      id: HF_MODEL,
      node_id: OLLAMA_NODE,
      details: { parameter_size: "596M", quantization_level: "Q4_K_M" },
      capabilities: ["completion", "tools"],
    });
    // A client that does not encode the name's slashes reaches the same model.
    expect((await admin("GET", `/nodes/${OLLAMA_NODE}/models/${HF_MODEL}`)).body).toMatchObject({ id: HF_MODEL, node_id: OLLAMA_NODE });
    const byEngine = await admin("GET", `/nodes/${OLLAMA_NODE}/models/llama3.2%3A3b?engine=${ENGINE}`);
    expect(byEngine.body).toMatchObject({ id: "llama3.2:3b", model_info: { "llama.context_length": 131072 } });

    const unknown = await admin<ErrorBody>("GET", `/nodes/${OLLAMA_NODE}/models/ghost%3A1b`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: "not_found", message: `Node ${OLLAMA_NODE}: Ollama: model 'ghost:1b' not found` });
  });

  it("streams a pull's progress as server-sent events while it runs, then done, and audits it", async () => {
    const res = await pull({ model: "qwen3:8b" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const events = await readEvents(res);
    expect(events.map((e) => e.event)).toEqual([null, null, null, null, null, null, null, "done"]);
    expect(events[0]?.data).toEqual({ status: "pulling manifest" });
    expect(events[2]?.data).toEqual({ status: "pulling 6a0746a1ec1a", digest: expect.stringMatching(/^sha256:/) as unknown, total: 2_019_377_376, completed: 1_009_688_688 });
    expect(events[6]?.data).toEqual({ status: "success" });
    expect(events[7]?.data).toEqual({ status: "success", model: "qwen3:8b", node_id: OLLAMA_NODE });
    // Relayed as Ollama sends it, not once the pull is over: the lines arrive STEP_MS apart.
    expect((events[6]?.at ?? 0) - (events[0]?.at ?? 0)).toBeGreaterThanOrEqual(STEP_MS * 4);
    expect(ollama.models.map((m) => m.name)).toContain("qwen3:8b");

    const rows = await auditRows(["node.model_pull"]);
    expect(rows.find((r) => (r.details as { model?: string }).model === "qwen3:8b")).toMatchObject({ actor: "admin-token", targetType: "node", details: { model: "qwen3:8b", engine: null } });
  });

  it("ends a failing pull with an error event carrying Ollama's message and the node", async () => {
    const events = await readEvents(await pull({ model: FAILING, engine: ENGINE }));
    const last = events.at(-1);
    expect(last?.event).toBe("error");
    expect(last?.data).toEqual({
      error: { message: `Node ${OLLAMA_NODE}: pull of ${FAILING} failed: max retries exceeded: unexpected EOF`, type: "api_error", param: null, code: "upstream_error" },
    });
    expect(events.filter((e) => e.event === "done")).toEqual([]);
    expect(ollama.models.map((m) => m.name)).not.toContain(FAILING);
  });

  it("stops the pull on the node when the operator goes away", async () => {
    const abort = new AbortController();
    const res = await pull({ model: "abandoned:1b" }, abort.signal);
    await readEvents(res, () => true).catch(() => []);
    abort.abort();
    // The whole pull would take seven steps; give it well over that to show it did not finish.
    await new Promise((r) => setTimeout(r, STEP_MS * 12));
    expect(ollama.models.map((m) => m.name)).not.toContain("abandoned:1b");
  });

  it("refuses a pull without a model with 400", async () => {
    const res = await pull({ engine: ENGINE });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error).toMatchObject({ code: "invalid_value", message: expect.stringContaining("model") as unknown });
  });

  it("deletes a model, audited, and says 404 for one that is not there", async () => {
    ollama.models.push({ name: "tiny:1b" });
    const deleted = await admin("DELETE", `/nodes/${OLLAMA_NODE}/models/tiny%3A1b`);
    expect(deleted).toEqual({ status: 200, body: { object: "node_model", id: "tiny:1b", deleted: true, engine: ENGINE, node_id: OLLAMA_NODE } });
    expect(ollama.models.map((m) => m.name)).not.toContain("tiny:1b");
    const rows = await auditRows(["node.model_delete"]);
    expect(rows.map((r) => [r.actor, r.details])).toContainEqual(["admin-token", { model: "tiny:1b", engine: ENGINE }]);

    const again = await admin<ErrorBody>("DELETE", `/nodes/${OLLAMA_NODE}/models/tiny%3A1b`);
    expect(again.status).toBe(404);
    expect(again.body.error.message).toBe(`Node ${OLLAMA_NODE}: Ollama: model 'tiny:1b' not found`);
  });

  it("reports the host's CPU, memory, GPUs, disk and model storage", async () => {
    const system = await admin<Record<string, unknown> & { cpu: { cores: number }; memory: { total_bytes: number }; disk: { total_bytes: number } }>("GET", `/nodes/${OLLAMA_NODE}/system`);
    expect(system.status).toBe(200);
    expect(system.body).toMatchObject({
      object: "node_system",
      node_id: OLLAMA_NODE,
      gpus: [{ index: 0, name: "NVIDIA L4", uuid: "GPU-5f2c", utilization_pct: 37, memory_used_bytes: 10240 * 1024 * 1024, memory_total_bytes: 23034 * 1024 * 1024, temperature_c: 51, power_draw_w: 27.5 }],
      gpu_error: null,
      disk: { path: "/" },
      model_storage: [{ engine: ENGINE, models: ollama.models.length, bytes: ollama.models.length * 2_019_393_189 }],
    });
    expect(system.body.cpu.cores).toBeGreaterThan(0);
    expect(system.body.memory.total_bytes).toBeGreaterThan(0);
    expect(system.body.disk.total_bytes).toBeGreaterThan(0);
  });

  it("answers 502 naming a node that is down, and 404 for an unknown node", async () => {
    const down = await admin<ErrorBody>("GET", `/nodes/${DOWN_NODE}/system`);
    expect(down.status).toBe(502);
    expect(down.body.error).toMatchObject({ code: "upstream_error", type: "api_error" });
    expect(down.body.error.message).toMatch(new RegExp(`^Node ${DOWN_NODE} could not be reached at http://127\\.0\\.0\\.1:\\d+\\.$`));

    const unknown = await admin<ErrorBody>("GET", "/nodes/nowhere-9/models");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: "not_found", message: "No node with id nowhere-9." });
  });

  it("answers 504 naming a node that does not answer in time", { timeout: 60_000 }, async () => {
    const started = Date.now();
    const slow = await admin<ErrorBody>("GET", `/nodes/${STALLED_NODE}/system`);
    expect(slow.status).toBe(504);
    expect(slow.body.error).toMatchObject({ code: "upstream_timeout", type: "api_error", message: `Node ${STALLED_NODE} did not answer within 15 s.` });
    expect(Date.now() - started).toBeGreaterThanOrEqual(15_000);
  });

  it("relays the node's 409 when it has no Ollama engine", async () => {
    const shown = await admin<ErrorBody>("GET", `/nodes/${PLAIN_NODE}/models/llama3.2%3A3b`);
    expect(shown.status).toBe(409);
    expect(shown.body.error).toMatchObject({ code: "conflict", message: `Node ${PLAIN_NODE}: Model management needs an Ollama engine on this node.` });
    const res = await fetch(`${stack.gatewayUrl}/admin/nodes/${PLAIN_NODE}/models/pull`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "qwen3:8b" }),
    });
    expect(res.status).toBe(409);
    expect(((await res.json()) as ErrorBody).error.message).toBe(`Node ${PLAIN_NODE}: Model management needs an Ollama engine on this node.`);
  });

  it("refuses a tenant's admin key with 403", async () => {
    const tenant = await admin<{ id: string }>("POST", "/tenants", { body: { name: "Host mgmt tenant" } });
    const env = await admin<{ id: string }>("POST", "/environments", { body: { tenant_id: tenant.body.id, name: "prod" } });
    const key = await admin<{ key: string }>("POST", "/keys", { body: { environment_id: env.body.id, name: "admin", scopes: ["admin"] } });
    expect(key.status).toBe(201);
    for (const [method, path] of [
      ["GET", `/nodes/${OLLAMA_NODE}/models`],
      ["GET", `/nodes/${OLLAMA_NODE}/system`],
      ["DELETE", `/nodes/${OLLAMA_NODE}/models/llama3.2%3A3b`],
      ["POST", `/nodes/${OLLAMA_NODE}/models/pull`],
    ] as const) {
      const refused = await admin<ErrorBody>(method, path, { token: key.body.key, body: method === "POST" ? { model: "qwen3:8b" } : undefined });
      expect(refused.status).toBe(403);
      expect(refused.body.error.code).toBe("permission_denied");
    }
    expect(ollama.models.map((m) => m.name)).toContain("llama3.2:3b");
  });
});

describe("host management with the admin CLI", () => {
  it("lists, shows, pulls with progress, deletes and reports the system", async () => {
    const models = await cli(["node", "models", OLLAMA_NODE]);
    expect(models.code).toBe(0);
    const rows = models.stdout.split("\n").map((line) => line.trim().split(/\s{2,}/));
    expect(rows[0]).toEqual(["ENGINE", "MODEL", "SERVED", "ON DISK", "SIZE", "PARAMS", "QUANT"]);
    expect(rows).toContainEqual([ENGINE, HF_MODEL, "yes", "yes", "1.9 GiB", "596M", "Q4_K_M"]);

    const shown = await cli(["node", "model", OLLAMA_NODE, HF_MODEL]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^model\s+hf\.co\/bartowski\/Qwen3-0\.6B-GGUF:Q4_K_M$/m);
    expect(shown.stdout).toMatch(/^parameter_size\s+596M$/m);
    expect(shown.stdout).toMatch(/^context_length\s+131072$/m);

    const pulled = await cli(["node", "pull", OLLAMA_NODE, "phi4:14b", "--engine", ENGINE]);
    expect(pulled).toMatchObject({ code: 0, stdout: `Pulled phi4:14b on node ${OLLAMA_NODE}.` });
    // Not a terminal: one line per status change (the layer's three progress lines share one status).
    expect(pulled.stderr.split("\n").filter(Boolean)).toEqual([
      "pulling manifest",
      `pulling 6a0746a1ec1a  [${"-".repeat(30)}] 0%  0 B / 1.9 GiB`,
      "verifying sha256 digest",
      "writing manifest",
      "success",
    ]);
    expect(ollama.models.map((m) => m.name)).toContain("phi4:14b");

    const failed = await cli(["node", "pull", OLLAMA_NODE, FAILING]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(`Pull failed: Node ${OLLAMA_NODE}: pull of ${FAILING} failed: max retries exceeded: unexpected EOF`);

    expect(await cli(["node", "model-delete", OLLAMA_NODE, "phi4:14b"])).toMatchObject({ code: 0, stdout: `Deleted phi4:14b from engine ${ENGINE} on node ${OLLAMA_NODE}.` });
    expect(ollama.models.map((m) => m.name)).not.toContain("phi4:14b");

    const system = await cli(["node", "system", OLLAMA_NODE]);
    expect(system.code).toBe(0);
    expect(system.stdout).toMatch(/^gpus\s+1$/m);
    expect(system.stdout).toMatch(/^0\s+NVIDIA L4\s+37%\s+10\.0 GiB \/ 22\.5 GiB\s+51C\s+27\.5W$/m);
    expect(system.stdout).toMatch(new RegExp(`^${ENGINE}\\s+\\d+\\s+\\d+\\.\\d GiB$`, "m"));

    const refused = await cli(["node", "model", PLAIN_NODE, "llama3.2:3b"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`Error (409 conflict): Node ${PLAIN_NODE}: Model management needs an Ollama engine on this node.`);
  });

  it("draws a pull's progress as one line rewritten in place when stderr is a terminal", async () => {
    const argv = [process.execPath, "worker/cli/admin.ts", "node", "pull", OLLAMA_NODE, "mistral:7b", "--url", stack.gatewayUrl, "--token", stack.adminToken];
    // util-linux script(1) runs the CLI on a pseudo-terminal and copies what it shows to stdout.
    const { stdout } = await promisify(execFile)("script", ["-qec", argv.map((a) => `'${a}'`).join(" "), "/dev/null"], {
      env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: "", SWITCHYARD_URL: "" },
    });
    const [progress, result] = stdout.split("\r\n");
    const bar = (filled: number, percent: number, done: string) => `pulling 6a0746a1ec1a  [${"#".repeat(filled)}${"-".repeat(30 - filled)}] ${percent}%  ${done} / 1.9 GiB`;
    expect(progress?.split("\r\x1b[2K")).toEqual(["", "pulling manifest", bar(0, 0, "0 B"), bar(15, 50, "962.9 MiB"), bar(30, 100, "1.9 GiB"), "verifying sha256 digest", "writing manifest", "success"]);
    expect(result).toBe(`Pulled mistral:7b on node ${OLLAMA_NODE}.`);
  });
});
