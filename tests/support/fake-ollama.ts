import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback fake of Ollama's native API serving the payloads of wire-formats.md §2: `/`,
 * `/api/version`, `/api/tags`, `/api/show`, `/api/ps`, `/api/delete` and `/api/pull` (NDJSON
 * progress, or one final object with `stream:false`). Errors are `{"error":"…"}`; a failing pull
 * streams an error line on a 200, as Ollama does once the stream started.
 */

/** A model on the fake's "disk". */
export interface FakeOllamaModel {
  name: string;
  parameterSize?: string;
  contextLength?: number;
}

/** Fake settings. */
export interface FakeOllamaOptions {
  models?: FakeOllamaModel[];
  /** Names listed by /api/ps as loaded in memory. */
  loaded?: string[];
  /** Pulls of these models stream some progress, then `{"error": message}`. */
  pullErrors?: Record<string, string>;
  /** Pause between NDJSON progress lines. */
  pullStepMs?: number;
  version?: string;
}

/** A running fake Ollama. */
export interface FakeOllama {
  readonly url: string;
  /** Method and path of each request received. */
  readonly requests: { method: string; path: string; body: string }[];
  /** Current models (pull adds, delete removes). */
  readonly models: FakeOllamaModel[];
  close(): Promise<void>;
}

const DIGEST = "sha256:6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa";

function tag(m: FakeOllamaModel) {
  return {
    name: m.name,
    model: m.name,
    modified_at: "2025-10-01T12:00:00.000000000Z",
    size: 2_019_393_189,
    digest: DIGEST.slice(7),
    details: { parent_model: "", format: "gguf", family: "llama", families: ["llama"], parameter_size: m.parameterSize ?? "3.2B", quantization_level: "Q4_K_M" },
  };
}

/** Starts the fake on a free loopback port. */
export async function startFakeOllama(options: FakeOllamaOptions = {}): Promise<FakeOllama> {
  const models: FakeOllamaModel[] = [...(options.models ?? [{ name: "llama3.2:3b" }])];
  const loaded = options.loaded ?? [];
  const requests: FakeOllama["requests"] = [];
  const stepMs = options.pullStepMs ?? 1;
  const find = (name: string) => models.find((m) => m.name === name || m.name === `${name}:latest`);

  const json = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };

  async function pull(res: ServerResponse, name: string, stream: boolean): Promise<void> {
    const error = options.pullErrors?.[name];
    const steps: Record<string, unknown>[] = [
      { status: "pulling manifest" },
      { status: `pulling ${DIGEST.slice(7, 19)}`, digest: DIGEST, total: 2_019_377_376 },
      { status: `pulling ${DIGEST.slice(7, 19)}`, digest: DIGEST, total: 2_019_377_376, completed: 1_009_688_688 },
      { status: `pulling ${DIGEST.slice(7, 19)}`, digest: DIGEST, total: 2_019_377_376, completed: 2_019_377_376 },
      { status: "verifying sha256 digest" },
      { status: "writing manifest" },
      { status: "success" },
    ];
    if (!stream) {
      if (error !== undefined) return json(res, 500, { error });
      if (find(name) === undefined) models.push({ name });
      return json(res, 200, { status: "success" });
    }
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    const lines = error === undefined ? steps : [...steps.slice(0, 3), { error }];
    for (const line of lines) {
      if (res.destroyed) return;
      res.write(`${JSON.stringify(line)}\n`);
      await new Promise((resolve) => setTimeout(resolve, stepMs));
    }
    if (error === undefined && find(name) === undefined) models.push({ name });
    res.end();
  }

  function handle(req: IncomingMessage, res: ServerResponse, path: string, raw: string): void {
    const method = req.method ?? "GET";
    if (path === "/" && (method === "GET" || method === "HEAD")) {
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
      res.end(method === "HEAD" ? undefined : "Ollama is running");
      return;
    }
    if (method === "GET" && path === "/api/version") return json(res, 200, { version: options.version ?? "0.12.3" });
    if (method === "GET" && path === "/api/tags") return json(res, 200, { models: models.map(tag) });
    if (method === "GET" && path === "/api/ps") {
      const expires = new Date(Date.now() + 5 * 60_000).toISOString();
      const list = loaded.flatMap((name) => {
        const m = find(name);
        return m === undefined ? [] : [{ ...tag(m), expires_at: expires, size_vram: 2_019_393_189, context_length: m.contextLength ?? 4096 }];
      });
      return json(res, 200, { models: list });
    }
    let body: { model?: unknown; name?: unknown; stream?: unknown };
    try {
      body = raw === "" ? {} : (JSON.parse(raw) as typeof body);
    } catch {
      return json(res, 400, { error: "invalid character in request body" });
    }
    // Ollama still accepts the old `name` field next to `model`.
    const name = typeof body.model === "string" ? body.model : typeof body.name === "string" ? body.name : "";
    if (method === "POST" && path === "/api/show") {
      const m = find(name);
      if (m === undefined) return json(res, 404, { error: `model '${name}' not found` });
      return json(res, 200, {
        modelfile: `FROM ${m.name}\n`,
        parameters: 'stop "<|eot_id|>"',
        template: "{{ .Prompt }}",
        details: tag(m).details,
        model_info: { "general.architecture": "llama", "llama.context_length": m.contextLength ?? 131072 },
        capabilities: ["completion", "tools"],
      });
    }
    if (method === "DELETE" && path === "/api/delete") {
      const index = models.findIndex((m) => m.name === name || m.name === `${name}:latest`);
      if (index === -1) return json(res, 404, { error: `model '${name}' not found` });
      models.splice(index, 1);
      res.writeHead(200, { "content-length": 0 });
      res.end();
      return;
    }
    if (method === "POST" && path === "/api/pull") {
      if (name === "") return json(res, 400, { error: "model is required" });
      void pull(res, name, body.stream !== false);
      return;
    }
    json(res, 404, { error: "404 page not found" });
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      const raw = Buffer.concat(chunks).toString("utf8");
      requests.push({ method: req.method ?? "GET", path, body: raw });
      handle(req, res, path, raw);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closing: Promise<void> | null = null;
  return {
    url,
    requests,
    models,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
