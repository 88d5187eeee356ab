import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { usageRecords } from "../../schema/tables/index.ts";
import { readEmbeddingsAnswer, translateEmbed, translateEmbeddings } from "../../worker/src/ollama/translate.ts";
import { admin, expectStatus } from "./admin-helpers.ts";
import { eventually, flushNow, gateway, post, query } from "./helpers.ts";

// Ollama's native embedding routes, as an Ollama client calls them (plain fetch with Ollama's shapes).
const EMBED = "sim-embed";
/** An Ollama-style tag, as an alias of the catalogue's embedding model (put back at the end). */
const TAGGED = "nomic-embed-text:latest";
let before: string[] = [];
/** The simulated engine's embedding width (backplane/src/sim/options.ts). */
const DIMENSIONS = 384;

interface Embed {
  model: string;
  embeddings: number[][];
  total_duration?: number;
  load_duration?: number;
  prompt_eval_count?: number;
}

beforeAll(async () => {
  before = expectStatus(await admin<{ aliases: string[] }>("GET", `/models/${EMBED}`), 200).aliases;
  // Only TAGGED while this file runs (not the seeded sim-embed:latest), so `sim-embed:latest` below is Ollama's tag rule at work.
  expectStatus(await admin("PUT", `/models/${EMBED}`, { aliases: [TAGGED] }), 200);
  await eventually(async () => ((await post("/api/embed", { model: TAGGED, input: "warm" })).status === 200 ? true : undefined));
});

afterAll(async () => {
  await admin("PUT", `/models/${EMBED}`, { aliases: before });
});

function usageRow(requestId: string) {
  return eventually(async () => {
    await flushNow();
    return query(async (db) => (await db.select().from(usageRecords).where(eq(usageRecords.id, requestId)))[0]);
  });
}

describe("POST /api/embed", () => {
  it("embeds one input in Ollama's shape, echoing the model name and counting the prompt, metered as an embeddings request", async () => {
    const res = await post("/api/embed", { model: EMBED, input: "Why is the sky blue?" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    // The inference path's own headers come through (x-switchyard-*: node, region, cache).
    expect(res.headers.get("x-switchyard-node")).toBe(inject("liveNodeId"));
    expect(res.headers.get("x-switchyard-region")).toBe("local");
    const body = await res.json<Embed>();
    expect(Object.keys(body).sort()).toEqual(["embeddings", "load_duration", "model", "prompt_eval_count", "total_duration"]);
    expect(body.model).toBe(EMBED);
    expect(body.embeddings).toHaveLength(1);
    expect(body.embeddings[0]).toHaveLength(DIMENSIONS);
    expect(body.embeddings[0]?.every((v) => typeof v === "number")).toBe(true);
    expect(body.prompt_eval_count).toBeGreaterThan(0);
    expect(body.total_duration).toBeGreaterThan(0);
    expect(body.load_duration).toBe(0);
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ model: EMBED, endpoint: "embeddings", status: "ok", promptTokens: body.prompt_eval_count, completionTokens: 0 });
  });

  it("embeds a batch in input order, through an Ollama-tagged alias, echoing the name the client used", async () => {
    const res = await post("/api/embed", { model: TAGGED, input: ["first", "second", "third"], truncate: true, keep_alive: "5m", options: { temperature: 0 } });
    expect(res.status).toBe(200);
    const body = await res.json<Embed>();
    expect(body.model).toBe(TAGGED);
    expect(body.embeddings).toHaveLength(3);
    // The same text embeds the same way, whatever its position in a batch.
    const single = await (await post("/api/embed", { model: EMBED, input: "second" })).json<Embed>();
    expect(body.embeddings[1]).toEqual(single.embeddings[0]);
    expect(body.embeddings[0]).not.toEqual(body.embeddings[1]);
    expect((await usageRow(res.headers.get("x-request-id") ?? "")).model).toBe(EMBED);
  });

  it("reads a name without a tag as its :latest tag, and a :latest name as the untagged model, as Ollama names models", async () => {
    const untagged = await post("/api/embed", { model: "nomic-embed-text", input: "tagless" });
    expect(untagged.status).toBe(200);
    expect((await untagged.json<Embed>()).model).toBe("nomic-embed-text");
    expect((await usageRow(untagged.headers.get("x-request-id") ?? "")).model).toBe(EMBED);
    const latest = await post("/api/embeddings", { model: `${EMBED}:latest`, prompt: "tagged" });
    expect(latest.status).toBe(200);
    expect((await usageRow(latest.headers.get("x-request-id") ?? "")).model).toBe(EMBED);
    // The rule is Ollama's: the OpenAI routes take names as the catalogue has them.
    expect((await post("/v1/embeddings", { model: `${EMBED}:latest`, input: "a" })).status).toBe(404);
    expect((await post("/api/embed", { model: "nomic-embed-text", input: [] })).status).toBe(200);
    // Only :latest is implied: another tag is a name of its own.
    expect((await post("/api/embed", { model: `${EMBED}:v2`, input: "a" })).status).toBe(404);
  });

  it("keeps the embeddings cache's answer header: a repeated input is a hit", async () => {
    const input = `cached ${crypto.randomUUID()}`;
    const first = await post("/api/embed", { model: EMBED, input });
    expect(first.headers.get("x-switchyard-cache")).toBe("miss");
    // The cache is written in waitUntil, after the first answer went out.
    const again = await eventually(async () => {
      const res = await post("/api/embed", { model: EMBED, input });
      return res.headers.get("x-switchyard-cache") === "hit" ? res : undefined;
    });
    expect((await again.json<Embed>()).embeddings).toEqual((await first.json<Embed>()).embeddings);
  });

  it("cuts vectors to `dimensions`", async () => {
    const body = await (await post("/api/embed", { model: EMBED, input: "short", dimensions: 64 })).json<Embed>();
    expect(body.embeddings[0]).toHaveLength(64);
  });

  it("answers an empty input with no embeddings and no engine call, as Ollama does", async () => {
    for (const input of ["", [], undefined]) {
      const res = await post("/api/embed", { model: EMBED, input });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ model: EMBED, embeddings: [] });
      expect(res.headers.get("x-switchyard-node")).toBeNull();
    }
  });

  it("fails an input longer than the context with truncate false, and truncates it by default", async () => {
    const long = "word ".repeat(4000);
    const refused = await post("/api/embed", { model: EMBED, input: long, truncate: false });
    expect(refused.status).toBe(400);
    expect(Object.keys(await refused.json<{ error: string }>())).toEqual(["error"]);
    const truncated = await post("/api/embed", { model: EMBED, input: long });
    expect(truncated.status).toBe(200);
    expect((await truncated.json<Embed>()).prompt_eval_count).toBe(512);
  });
});

describe("POST /api/embeddings", () => {
  it("answers {embedding} for a prompt, the same vector /api/embed gives", async () => {
    const res = await post("/api/embeddings", { model: TAGGED, prompt: "The sky is blue because of Rayleigh scattering" });
    expect(res.status).toBe(200);
    const body = await res.json<{ embedding: number[] }>();
    expect(Object.keys(body)).toEqual(["embedding"]);
    expect(body.embedding).toHaveLength(DIMENSIONS);
    const embed = await (await post("/api/embed", { model: EMBED, input: "The sky is blue because of Rayleigh scattering" })).json<Embed>();
    expect(body.embedding).toEqual(embed.embeddings[0]);
    expect((await usageRow(res.headers.get("x-request-id") ?? "")).model).toBe(EMBED);
  });

  it("answers an empty prompt with an empty embedding", async () => {
    const res = await post("/api/embeddings", { model: EMBED, prompt: "" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ embedding: [] });
  });
});

describe("Ollama errors", () => {
  async function error(res: Response, status: number): Promise<string> {
    expect(res.status).toBe(status);
    expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    const body = await res.json<{ error: unknown }>();
    expect(Object.keys(body)).toEqual(["error"]);
    expect(typeof body.error).toBe("string");
    return body.error as string;
  }

  it("answers a missing or unknown key with 401 in Ollama's shape", async () => {
    expect(await error(await gateway("/api/embed", { method: "POST", body: JSON.stringify({ model: EMBED, input: "a" }), key: null }), 401)).toMatch(/API key/);
    expect(await error(await gateway("/api/embeddings", { method: "POST", body: JSON.stringify({ model: EMBED, prompt: "a" }), key: "sk-sy-" + "A".repeat(43) }), 401)).toMatch(/Incorrect API key/);
  });

  it("answers an unknown model 404, a chat model 400 and a key not allowed the model 404", async () => {
    expect(await error(await post("/api/embed", { model: "nope:latest", input: "a" }), 404)).toContain("'nope:latest' does not exist");
    expect(await error(await post("/api/embed", { model: "nope:latest", input: [] }), 404)).toContain("'nope:latest' does not exist");
    expect(await error(await post("/api/embeddings", { model: "sim-llama-8b", prompt: "a" }), 400)).toContain("chat model");
    const chatOnly = inject("keys").chatOnlyModel;
    expect(await error(await post("/api/embed", { model: EMBED, input: "a" }, chatOnly), 404)).toContain("does not exist or you do not have access");
  });

  it("answers malformed bodies 400 naming the problem", async () => {
    expect(await error(await gateway("/api/embed", { method: "POST", body: "{not json" }), 400)).toMatch(/not valid JSON/);
    expect(await error(await post("/api/embed", { input: "a" }), 400)).toBe("model is required");
    expect(await error(await post("/api/embed", { model: EMBED, input: [1, 2] }), 400)).toMatch(/invalid input type/);
    expect(await error(await post("/api/embed", { model: EMBED, input: "a", dimensions: 0 }), 400)).toMatch(/dimensions/);
    expect(await error(await post("/api/embed", { model: EMBED, input: "a", truncate: "yes" }), 400)).toMatch(/truncate/);
    expect(await error(await post("/api/embeddings", { model: EMBED, prompt: ["a"] }), 400)).toMatch(/prompt must be a string/);
  });

  it("answers the wrong method 405 with Allow, and an unknown /api route 404, in Ollama's shape", async () => {
    const wrong = await gateway("/api/embed");
    expect(wrong.headers.get("allow")).toBe("POST");
    expect(await error(wrong, 405)).toContain("use POST");
    expect(await error(await gateway("/api/tags"), 404)).toContain("No route for GET /api/tags");
  });
});

describe("translation", () => {
  it("turns /api/embed into an OpenAI embeddings body that truncates by default", () => {
    expect(JSON.parse(translateEmbed('{"model":"m","input":["a","b"],"dimensions":8}').openai ?? "")).toEqual({ model: "m", input: ["a", "b"], encoding_format: "float", dimensions: 8, truncate_prompt_tokens: -1 });
    expect(JSON.parse(translateEmbed('{"model":"m","input":"a","truncate":false}').openai ?? "")).toEqual({ model: "m", input: ["a"], encoding_format: "float" });
    expect(JSON.parse(translateEmbeddings('{"model":"m","prompt":"a"}').openai ?? "")).toEqual({ model: "m", input: "a", encoding_format: "float" });
  });

  it("reads vectors in index order and the prompt tokens", () => {
    const answer = readEmbeddingsAnswer({ data: [{ index: 1, embedding: [2] }, { index: 0, embedding: [1] }], usage: { prompt_tokens: 7 } });
    expect(answer).toEqual({ vectors: [[1], [2]], promptTokens: 7 });
    expect(() => readEmbeddingsAnswer({ data: [{ index: 0, embedding: "AAAA" }] })).toThrow(/float vectors/);
  });
});
