import { afterEach, describe, expect, it } from "vitest";
import { createOllamaClient, OllamaError, type PullProgress } from "../../backplane/src/engines/ollama-management.ts";
import { type FakeOllama, type FakeOllamaOptions, startFakeOllama } from "../support/fake-ollama.ts";

let fake: FakeOllama | null = null;
afterEach(async () => {
  await fake?.close();
  fake = null;
});

async function client(options: FakeOllamaOptions = {}) {
  fake = await startFakeOllama(options);
  return createOllamaClient(fake.url, { timeoutMs: 5000 });
}

async function collect(stream: AsyncIterable<PullProgress>): Promise<PullProgress[]> {
  const out: PullProgress[] = [];
  for await (const line of stream) out.push(line);
  return out;
}

describe("Ollama management client", () => {
  it("lists the models on disk with their details", async () => {
    const ollama = await client({ models: [{ name: "llama3.2:3b" }, { name: "qwen3:8b", parameterSize: "8.2B" }] });
    const models = await ollama.list();
    expect(models.map((m) => m.name)).toEqual(["llama3.2:3b", "qwen3:8b"]);
    expect(models[1]?.details?.parameter_size).toBe("8.2B");
    expect(models[0]?.size).toBe(2_019_393_189);
  });

  it("shows a model's details and context length", async () => {
    const ollama = await client({ models: [{ name: "llama3.2:3b", contextLength: 131072 }] });
    const show = await ollama.show("llama3.2:3b");
    expect(show.model_info?.["llama.context_length"]).toBe(131072);
    expect(show.capabilities).toEqual(["completion", "tools"]);
    expect(JSON.parse(fake?.requests.at(-1)?.body ?? "{}")).toEqual({ model: "llama3.2:3b" });
  });

  it("throws a typed 404 error with Ollama's message for an unknown model", async () => {
    const ollama = await client();
    const error = await ollama.show("ghost").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(OllamaError);
    expect(error).toMatchObject({ status: 404, message: "model 'ghost' not found" });
  });

  it("streams pull progress line by line, ending in success, and the model appears", async () => {
    const ollama = await client({ models: [] });
    const lines = await collect(await ollama.pull("qwen3:8b"));
    expect(lines[0]).toEqual({ status: "pulling manifest" });
    const progress = lines.filter((l) => l.digest !== undefined);
    expect(progress.length).toBe(3);
    expect(progress[0]?.completed).toBeUndefined();
    expect(progress.at(-1)).toMatchObject({ total: 2_019_377_376, completed: 2_019_377_376 });
    expect(lines.at(-1)).toEqual({ status: "success" });
    expect(JSON.parse(fake?.requests.at(-1)?.body ?? "{}")).toEqual({ model: "qwen3:8b", stream: true });
    expect((await ollama.list()).map((m) => m.name)).toEqual(["qwen3:8b"]);
  });

  it("ends a pull with the error line Ollama sends mid-stream on a 200", async () => {
    const ollama = await client({ models: [], pullErrors: { "huge:70b": "max retries exceeded: unexpected EOF" } });
    const lines = await collect(await ollama.pull("huge:70b"));
    expect(lines.length).toBe(4);
    expect(lines.at(-1)).toEqual({ error: "max retries exceeded: unexpected EOF" });
    expect(await ollama.list()).toEqual([]);
  });

  it("ends with a made-up error line when the stream is cut off before success", async () => {
    const ollama = await client({ models: [], pullStepMs: 200 });
    const controller = new AbortController();
    const lines: PullProgress[] = [];
    for await (const line of await ollama.pull("qwen3:8b", controller.signal)) {
      lines.push(line);
      if (lines.length === 1) controller.abort();
    }
    expect(lines[0]).toEqual({ status: "pulling manifest" });
    expect(lines.at(-1)?.error).toMatch(/^pull stream broke/);
    expect(lines.length).toBe(2);
  });

  it("refuses a pull without a model before streaming, as a typed 400", async () => {
    const ollama = await client();
    await expect(ollama.pull("")).rejects.toMatchObject({ name: "OllamaError", status: 400, message: "model is required" });
  });

  it("pulls with stream:false and returns the single final object, or throws the error status", async () => {
    const ollama = await client({ models: [], pullErrors: { "bad:1b": "pull model manifest: file does not exist" } });
    expect(await ollama.pullToEnd("qwen3:8b")).toEqual({ status: "success" });
    expect(JSON.parse(fake?.requests.at(-1)?.body ?? "{}")).toEqual({ model: "qwen3:8b", stream: false });
    await expect(ollama.pullToEnd("bad:1b")).rejects.toMatchObject({ status: 500, message: "pull model manifest: file does not exist" });
  });

  it("deletes a model, and answers not_found as a value for a missing one", async () => {
    const ollama = await client({ models: [{ name: "llama3.2:3b" }] });
    expect(await ollama.remove("llama3.2:3b")).toEqual({ removed: true });
    expect(fake?.requests.at(-1)).toMatchObject({ method: "DELETE", path: "/api/delete", body: '{"model":"llama3.2:3b"}' });
    expect(await ollama.list()).toEqual([]);
    expect(await ollama.remove("llama3.2:3b")).toEqual({ removed: false, reason: "not_found", message: "model 'llama3.2:3b' not found" });
  });
});

describe("fake Ollama", () => {
  it("serves /, /api/version and /api/ps as documented", async () => {
    fake = await startFakeOllama({ models: [{ name: "llama3.2:3b" }], loaded: ["llama3.2:3b"], version: "0.12.3" });
    expect(await (await fetch(`${fake.url}/`)).text()).toBe("Ollama is running");
    expect(await (await fetch(`${fake.url}/api/version`)).json()).toEqual({ version: "0.12.3" });
    const ps = (await (await fetch(`${fake.url}/api/ps`)).json()) as { models: { name: string; size_vram: number; expires_at: string }[] };
    expect(ps.models.map((m) => m.name)).toEqual(["llama3.2:3b"]);
    expect(ps.models[0]?.size_vram).toBeGreaterThan(0);
    expect(Number.isNaN(Date.parse(ps.models[0]?.expires_at ?? ""))).toBe(false);
  });
});
