import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { useSimEngine } from "../support/sim-harness.ts";
import { countPromptTokens, type SimEngine } from "../../backplane/src/sim/index.ts";

// /v1/embeddings of the simulated engine.

const start = useSimEngine();

async function embed(sim: SimEngine, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${sim.url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

interface EmbeddingBody {
  id: string;
  object: string;
  model: string;
  data: { index: number; object: string; embedding: number[] | string }[];
  usage: Record<string, unknown>;
}

function norm(v: readonly number[]): number {
  return Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));
}

function decodeBase64(text: string): number[] {
  const bytes = Buffer.from(text, "base64");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.byteLength / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

describe("simulated vLLM: embeddings", () => {
  it("returns deterministic unit float vectors in vLLM's EmbeddingResponse shape", async () => {
    const sim = await start();
    const res = await embed(sim, { model: "sim-embed", input: ["the quick fox", "lazy dog"], encoding_format: "float" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as EmbeddingBody;
    expect(Object.keys(body)).toEqual(["id", "object", "created", "model", "data", "usage"]);
    expect(body.id).toMatch(/^embd-[0-9a-f]{32}$/);
    expect(body.object).toBe("list");
    expect(body.data.map((d) => [d.index, d.object])).toEqual([
      [0, "embedding"],
      [1, "embedding"],
    ]);
    const prompt = countPromptTokens("the quick fox") + countPromptTokens("lazy dog");
    expect(body.usage).toEqual({ prompt_tokens: prompt, total_tokens: prompt, completion_tokens: 0, prompt_tokens_details: null });
    const [a, b] = body.data.map((d) => d.embedding as number[]);
    expect(a).toHaveLength(384);
    expect(norm(a ?? [])).toBeCloseTo(1, 5);
    expect(a).not.toEqual(b);
    const again = (await (await embed(sim, { input: "the quick fox" })).json()) as EmbeddingBody;
    expect(again.model).toBe("sim-embed");
    expect(again.data[0]?.embedding).toEqual(a);
  });

  it("takes embedMs per batch before it answers, with the same vectors", async () => {
    const sim = await start({ embedMs: 60 });
    const started = performance.now();
    const res = await embed(sim, { model: "sim-embed", input: ["one", "two", "three"], encoding_format: "float" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as EmbeddingBody;
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    expect(body.data).toHaveLength(3);
  });

  it("encodes base64 as little-endian float32 equal to the float output, and honours dimensions", async () => {
    const sim = await start();
    const floats = (await (await embed(sim, { input: "hello", encoding_format: "float", dimensions: 64 })).json()) as EmbeddingBody;
    const b64 = (await (await embed(sim, { input: "hello", encoding_format: "base64", dimensions: 64 })).json()) as EmbeddingBody;
    expect(typeof b64.data[0]?.embedding).toBe("string");
    const decoded = decodeBase64(String(b64.data[0]?.embedding));
    expect(decoded).toEqual(floats.data[0]?.embedding);
    expect(decoded).toHaveLength(64);
    expect(norm(decoded)).toBeCloseTo(1, 5);

    // The official client asks for base64 by default and decodes it.
    const openai = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "x", maxRetries: 0 });
    const viaClient = await openai.embeddings.create({ model: "sim-embed", input: "hello", dimensions: 64 });
    expect(Array.from(viaClient.data[0]?.embedding ?? [])).toEqual(floats.data[0]?.embedding);
  });

  it("accepts token-id inputs and counts them as prompt tokens", async () => {
    const sim = await start();
    const single = (await (await embed(sim, { input: [1, 2, 3, 4] })).json()) as EmbeddingBody;
    expect(single.data).toHaveLength(1);
    expect(single.usage.prompt_tokens).toBe(4);
    const batch = (await (await embed(sim, { input: [[1, 2], [3]] })).json()) as EmbeddingBody;
    expect(batch.data).toHaveLength(2);
    expect(batch.usage.prompt_tokens).toBe(3);
  });

  it("rejects embeddings on a generate model, chat on an embed model, and inputs beyond the context", async () => {
    const sim = await start();
    const onGenerator = await embed(sim, { model: "sim-llama-8b", input: "x" });
    expect(onGenerator.status).toBe(400);
    expect(await onGenerator.json()).toEqual({
      error: { message: "The model does not support Embeddings API", type: "BadRequestError", param: null, code: 400 },
    });
    const chat = await fetch(`${sim.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "sim-embed", prompt: "x" }),
    });
    expect(chat.status).toBe(400);
    const long = await embed(sim, { input: "word ".repeat(600) });
    expect(long.status).toBe(400);
    expect(((await long.json()) as { error: { message: string } }).error.message).toContain("maximum context length is 512 tokens");
    const truncated = await embed(sim, { input: "word ".repeat(600), truncate_prompt_tokens: -1 });
    expect(truncated.status).toBe(200);
    expect(((await truncated.json()) as EmbeddingBody).usage.prompt_tokens).toBe(512);
    const tooWide = await embed(sim, { input: "x", dimensions: 999 });
    expect(tooWide.status).toBe(400);
  });
});
