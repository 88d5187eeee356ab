import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, stringify } from "yaml";
import { usageRecords } from "../../schema/tables/index.ts";
import { boundaryOf, encodeMultipart, parseMultipart } from "../../worker/src/audio/multipart.ts";
import { underModelId } from "../../worker/src/routing/aliases.ts";
import type { ProxyRequest } from "../../worker/src/proxy/validate.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type KeyJson } from "./admin-helpers.ts";
import { eventually, flushNow, gateway, post, query } from "./helpers.ts";
import { exports } from "cloudflare:workers";

// Aliases on the models the live test node serves; the catalogue is shared with the other files,
// so the aliases each model had before are put back at the end.
const CHAT = "sim-llama-8b";
const EMBED = "sim-embed";
const CHAT_ALIASES = ["sim-llama:latest", "llama-chat"];
const EMBED_ALIASES = ["nomic-embed-text:latest"];
const before = new Map<string, string[]>();
const made = new Set<string>();

interface ModelJson {
  id: string;
  aliases: string[];
}

async function aliasesOf(id: string): Promise<string[]> {
  return expectStatus(await admin<ModelJson>("GET", `/models/${encodeURIComponent(id)}`), 200).aliases;
}

async function setAliases(id: string, aliases: string[]) {
  return admin<ModelJson & ErrorBody>("PUT", `/models/${encodeURIComponent(id)}`, { aliases });
}

/** A fresh chat model (deactivated at the end). */
async function freshModel(prefix: string, fields: Record<string, unknown> = {}): Promise<string> {
  const id = `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  made.add(id);
  expectStatus(await admin("PUT", `/models/${id}`, { context_length: 4096, ...fields }), 201);
  return id;
}

/** Waits until the gateway's routing snapshot has `alias` (ROUTING_CACHE_ISOLATE_SECONDS=1 in the test bindings). */
async function aliasServed(alias: string): Promise<void> {
  await eventually(async () => {
    const res = await gateway("/v1/models");
    const ids = (await res.json<{ data: { id: string }[] }>()).data.map((m) => m.id);
    return ids.includes(alias) ? true : undefined;
  });
}

function usageRow(requestId: string) {
  return eventually(async () => {
    await flushNow();
    return query(async (db) => (await db.select().from(usageRecords).where(eq(usageRecords.id, requestId)))[0]);
  });
}

beforeAll(async () => {
  for (const id of [CHAT, EMBED]) before.set(id, await aliasesOf(id));
  expectStatus(await setAliases(CHAT, CHAT_ALIASES), 200);
  expectStatus(await setAliases(EMBED, [...(before.get(EMBED) ?? []), ...EMBED_ALIASES]), 200);
  await aliasServed(CHAT_ALIASES[0] ?? "");
  await aliasServed(EMBED_ALIASES[0] ?? "");
});

afterAll(async () => {
  for (const [id, aliases] of before) await setAliases(id, aliases);
  for (const id of made) await admin("DELETE", `/models/${id}`);
});

describe("model aliases in the admin API", () => {
  it("shows a model's aliases and refuses badly spelled, repeated or self-naming ones with a 400 naming the field", async () => {
    expect(await aliasesOf(CHAT)).toEqual(CHAT_ALIASES);
    const id = await freshModel("alias-bad");
    for (const [aliases, message] of [
      [["has space"], /spelled like a model id/],
      [[""], /spelled like a model id/],
      [["twice", "twice"], /listed twice/],
      [[id], /own id/],
    ] as const) {
      const res = await setAliases(id, [...aliases]);
      expect({ aliases, status: res.status, code: res.body.error.code }).toEqual({ aliases, status: 400, code: "invalid_value" });
      expect(res.body.error.message).toMatch(message);
      expect(res.body.error.param).toMatch(/^aliases/);
    }
    expect(await aliasesOf(id)).toEqual([]);
  });

  it("answers 409 naming the model when an alias is taken, names another model, or a new model's id is an alias", async () => {
    const id = await freshModel("alias-clash");
    const taken = await setAliases(id, ["free-name", CHAT_ALIASES[0] ?? ""]);
    expect(taken.status).toBe(409);
    expect(taken.body.error).toMatchObject({ code: "conflict", param: "aliases" });
    expect(taken.body.error.message).toContain(`already an alias of '${CHAT}'`);

    const another = await setAliases(id, [EMBED]);
    expect(another.status).toBe(409);
    expect(another.body.error.message).toContain(`is the id of the model '${EMBED}'`);

    // Nothing of a refused change is written.
    expect(await aliasesOf(id)).toEqual([]);

    const asAlias = await admin<ErrorBody>("PUT", `/models/${encodeURIComponent(CHAT_ALIASES[1] ?? "")}`, { context_length: 4096 });
    expect(asAlias.status).toBe(409);
    expect(asAlias.body.error.message).toContain(`'${CHAT_ALIASES[1] ?? ""}' is already an alias of '${CHAT}'`);
    expect((await admin("GET", `/models/${encodeURIComponent(CHAT_ALIASES[1] ?? "")}`)).status).toBe(404);
  });

  it("lets an inactive model's aliases go to another model, and refuses to reactivate it while they are taken", async () => {
    const old = await freshModel("alias-old", { aliases: ["moving-alias"] });
    expectStatus(await admin("DELETE", `/models/${old}`), 200);
    const next = await freshModel("alias-new", { aliases: ["moving-alias"] });
    expect(await aliasesOf(next)).toEqual(["moving-alias"]);
    const back = await admin<ErrorBody>("PUT", `/models/${old}`, { active: true });
    expect(back.status).toBe(409);
    expect(back.body.error.message).toContain(`already an alias of '${next}'`);
  });

  it("carries aliases in the catalogue document, moves one between models in one apply, and refuses a clash naming the entry", async () => {
    const a = await freshModel("doc-alias-a", { aliases: ["doc-moving"] });
    const b = await freshModel("doc-alias-b");
    const res = await exports.default.fetch(new Request("http://gateway.test/admin/models/configured", { headers: { authorization: `Bearer ${inject("adminToken")}` } }));
    const doc = parse(new TextDecoder().decode(await res.arrayBuffer())) as { models: { id: string; aliases?: string[] }[] };
    expect(doc.models.find((m) => m.id === a)?.aliases).toEqual(["doc-moving"]);
    expect(doc.models.find((m) => m.id === CHAT)?.aliases).toEqual(CHAT_ALIASES);

    const put = (models: typeof doc.models, query = "") =>
      exports.default.fetch(
        new Request(`http://gateway.test/admin/models/configured${query}`, {
          method: "PUT",
          headers: { authorization: `Bearer ${inject("adminToken")}`, "content-type": "application/yaml" },
          body: stringify({ models }),
        }),
      );
    const moved = doc.models.map((m) => (m.id === a ? { ...m, aliases: [] } : m.id === b ? { ...m, aliases: ["doc-moving"] } : m));
    const applied = await put(moved, "?apply=true");
    expect(applied.status).toBe(200);
    const plan = await applied.json<{ update: { id: string; changes: Record<string, { from: unknown; to: unknown }> }[] }>();
    expect(plan.update).toEqual([
      { id: a, changes: { aliases: { from: ["doc-moving"], to: [] } } },
      { id: b, changes: { aliases: { from: [], to: ["doc-moving"] } } },
    ].sort((x, y) => (x.id < y.id ? -1 : 1)));
    expect(await aliasesOf(b)).toEqual(["doc-moving"]);

    const clash = moved.map((m) => (m.id === a ? { ...m, aliases: ["doc-moving"] } : m));
    const refused = await put(clash);
    expect(refused.status).toBe(409);
    const body = await refused.json<ErrorBody>();
    const index = clash.findIndex((m) => m.id === a);
    expect(body.error.param).toBe(`models[${index}].aliases`);
    expect(body.error.message).toContain(`already an alias of '${b}'`);
  });
});

describe("requests naming an alias", () => {
  it("serves chat under the model's id: the engine gets the id, the answer names it, and the usage row records it", async () => {
    const res = await post("/v1/chat/completions", { model: CHAT_ALIASES[0], messages: [{ role: "user", content: "hi" }], max_tokens: 3 });
    expect(res.status).toBe(200);
    const body = await res.json<{ model: string; usage: { completion_tokens: number } }>();
    expect(body.model).toBe(CHAT);
    const row = await usageRow(res.headers.get("x-request-id") ?? "");
    expect(row).toMatchObject({ model: CHAT, endpoint: "chat", status: "ok", completionTokens: 3 });
  });

  it("resolves aliases on streams, embeddings, Messages, Responses and tokenize", async () => {
    const stream = await post("/v1/chat/completions", { model: CHAT_ALIASES[1], messages: [{ role: "user", content: "hi" }], max_tokens: 2, stream: true });
    expect(stream.status).toBe(200);
    expect(await stream.text()).toContain(`"model":"${CHAT}"`);

    const embedding = await post("/v1/embeddings", { model: EMBED_ALIASES[0], input: ["a", "b"] });
    expect(embedding.status).toBe(200);
    expect((await embedding.json<{ model: string; data: unknown[] }>()).data).toHaveLength(2);
    expect((await usageRow(embedding.headers.get("x-request-id") ?? "")).model).toBe(EMBED);

    const messages = await post("/v1/messages", { model: CHAT_ALIASES[0], max_tokens: 3, messages: [{ role: "user", content: "hi" }] });
    expect(messages.status).toBe(200);
    expect((await messages.json<{ model: string }>()).model).toBe(CHAT);

    const responses = await post("/v1/responses", { model: CHAT_ALIASES[0], input: "hi", max_output_tokens: 3 });
    expect(responses.status).toBe(200);
    expect((await responses.json<{ model: string }>()).model).toBe(CHAT);

    const tokens = await post("/tokenize", { model: CHAT_ALIASES[0], prompt: "hello there" });
    expect(tokens.status).toBe(200);
    expect((await tokens.json<{ tokens: number[] }>()).tokens.length).toBeGreaterThan(0);
  });

  it("lets a key restricted to a model use its aliases, and one restricted to an alias use the model", async () => {
    const byId = inject("keys").chatOnlyModel; // allowed_models: [sim-llama-8b]
    expect((await post("/v1/chat/completions", { model: CHAT_ALIASES[0], messages: [{ role: "user", content: "hi" }], max_tokens: 1 }, byId)).status).toBe(200);
    const other = await post("/v1/embeddings", { model: EMBED_ALIASES[0], input: "a" }, byId);
    expect(other.status).toBe(404);
    expect((await other.json<ErrorBody>()).error.code).toBe("model_not_found");

    const box = await sandbox();
    const key = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: box.environmentId, name: "alias-only", allowed_models: [CHAT_ALIASES[1]] }), 201).key ?? "";
    const served = await post("/v1/chat/completions", { model: CHAT, messages: [{ role: "user", content: "hi" }], max_tokens: 1 }, key);
    expect(served.status).toBe(200);
    const listed = (await (await gateway("/v1/models", { key })).json<{ data: { id: string }[] }>()).data.map((m) => m.id);
    // The built-in council asks CHAT, so it is listed after the models (docs/council.md).
    expect(listed).toEqual([...[CHAT_ALIASES[1] ?? "", CHAT, CHAT_ALIASES[0] ?? ""].sort((x, y) => x.localeCompare(y)), "council/default"]);
  });

  it("lists each alias in /v1/models as its own entry whose root is the model", async () => {
    const res = await gateway("/v1/models");
    const data = (await res.json<{ data: { id: string; root: string; alias_of: string | null; aliases: string[]; kind: string; available: boolean }[] }>()).data;
    const own = data.find((m) => m.id === CHAT);
    expect(own).toMatchObject({ root: CHAT, alias_of: null, aliases: CHAT_ALIASES, kind: "chat", available: true });
    for (const alias of CHAT_ALIASES) expect(data.find((m) => m.id === alias)).toMatchObject({ root: CHAT, alias_of: CHAT, aliases: [], kind: "chat", available: true });
    expect(data.find((m) => m.id === EMBED_ALIASES[0])).toMatchObject({ root: EMBED, alias_of: EMBED, kind: "embedding" });
  });

  it("answers 404 model_not_found for a name that is neither an id nor an alias", async () => {
    const res = await post("/v1/chat/completions", { model: "sim-llama", messages: [{ role: "user", content: "hi" }] });
    expect(res.status).toBe(404);
    expect((await res.json<ErrorBody>()).error).toMatchObject({ code: "model_not_found", param: "model" });
  });
});

describe("the body sent upstream", () => {
  const base: Omit<ProxyRequest, "upstreamBody" | "model"> = {
    endpoint: "chat",
    stream: false,
    clientWantsUsage: false,
    output: { maxTokens: 1, limitField: "max_tokens", minTokens: 0, ignoreEos: false, prompts: 1, perPrompt: 1 },
    promptTokensEstimate: 1,
    prefixHash: null,
  };

  it("is the client's own bytes when the client named the id", () => {
    const raw = '{"model":"m",  "messages":[]}';
    const req = { ...base, model: "m", upstreamBody: raw };
    expect(underModelId(req, "m")).toBe(req);
  });

  it("carries the id, with every other field kept, when the client named an alias", () => {
    const out = underModelId({ ...base, model: "alias", upstreamBody: '{"model":"alias","top_k":5,"messages":[{"role":"user","content":"hi"}]}' }, "m");
    expect(out.model).toBe("m");
    expect(JSON.parse(out.upstreamBody as string)).toEqual({ model: "m", top_k: 5, messages: [{ role: "user", content: "hi" }] });
  });

  it("replaces the model field of an audio upload and keeps the file", () => {
    const file = new Uint8Array([1, 2, 3, 4]);
    const form = encodeMultipart([
      { name: "model", value: "whisper" },
      { name: "file", filename: "a.wav", contentType: "audio/wav", bytes: file },
    ]);
    const out = underModelId({ ...base, endpoint: "transcriptions", model: "whisper", upstreamBody: form.body, upstreamContentType: form.contentType }, "sim-whisper");
    const parts = parseMultipart(out.upstreamBody as Uint8Array, boundaryOf(out.upstreamContentType ?? "") ?? "");
    expect(parts.find((p) => p.name === "model")).toEqual({ name: "model", value: "sim-whisper" });
    const sent = parts.find((p) => p.name === "file");
    expect(sent && "bytes" in sent ? [...sent.bytes] : null).toEqual([1, 2, 3, 4]);
  });
});
