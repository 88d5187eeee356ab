import { writeFileSync } from "node:fs";
import { exports } from "cloudflare:workers";
import { afterAll, describe, expect, inject, it } from "vitest";
import { parse, stringify } from "yaml";
import type { AdminApi } from "../../worker/cli/client.ts";
import { catalogueCommands } from "../../worker/cli/catalogue.ts";
import type { CommandContext } from "../../worker/cli/context.ts";
import type { CataloguePlan } from "../../worker/src/routing/catalogue-wire.ts";
import { admin, expectStatus, sandbox, type ErrorBody, type List } from "./admin-helpers.ts";
import { gateway } from "./helpers.ts";

// The catalogue as one YAML document: GET /admin/models/configured and PUT (dry run or ?apply=true).
// The database is shared with the other files, so every document here is the current export with
// this test's own models changed: applying it leaves everyone else's models as they are.

interface Entry {
  id: string;
  [field: string]: unknown;
}
interface Doc {
  models: Entry[];
}

/** Models this file may have made: deactivated at the end, so other files see the catalogue they expect. */
const made = new Set<string>();

/** A fresh catalogue id. */
function fresh(prefix: string): string {
  const id = `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  made.add(id);
  return id;
}

afterAll(async () => {
  for (const id of made) await admin("DELETE", `/models/${id}`);
});

/** Calls /admin/models/configured with a raw body (the operator's token unless `token` is given). */
function configured(method: "GET" | "PUT", query = "", body?: string | Uint8Array, token: string | null = inject("adminToken")): Promise<Response> {
  const headers = new Headers();
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  if (body !== undefined) headers.set("content-type", "application/yaml");
  return exports.default.fetch(new Request(`http://gateway.test/admin/models/configured${query}`, { method, headers, body }));
}

/** The body as text (workerd warns when .text() reads a YAML body). */
async function textOf(res: Response): Promise<string> {
  return new TextDecoder().decode(await res.arrayBuffer());
}

async function exported(): Promise<Doc> {
  const res = await configured("GET");
  expect(res.status).toBe(200);
  return parse(await textOf(res)) as Doc;
}

async function put<T = CataloguePlan>(doc: Doc | string, query = ""): Promise<{ status: number; body: T }> {
  const res = await configured("PUT", query, typeof doc === "string" ? doc : stringify(doc));
  return { status: res.status, body: await res.json<T>() };
}

async function createModel(id: string, fields: Record<string, unknown> = {}): Promise<void> {
  expectStatus(await admin("PUT", `/models/${id}`, { family: "qwen", context_length: 8192, input_price_per_m_tokens: 0.1, output_price_per_m_tokens: 0.6, ...fields }), 201);
}

async function listedModels(): Promise<string[]> {
  const res = await gateway("/v1/models");
  return (await res.json<{ data: { id: string }[] }>()).data.map((m) => m.id);
}

/** The export with `a`'s output price changed, `b` left out, and `c` and its adapter `d` added (the adapter first). */
async function changedDocument(a: string, b: string, c: string, d: string): Promise<Doc> {
  const doc = await exported();
  const models = doc.models
    .filter((m) => m.id !== b)
    .map((m) => (m.id === a ? { ...m, output_price_per_m_tokens: 0.9 } : m));
  return { models: [{ id: d, base_model: c, adapter_source: `/adapters/${d}` }, ...models, { id: c, family: "llama", context_length: 16384, input_price_per_m_tokens: 0.2, output_price_per_m_tokens: 0.4 }] };
}

describe("the catalogue as a YAML document", () => {
  it("exports every model as YAML ordered by id, and applying the export changes nothing", async () => {
    const id = fresh("doc-export");
    await createModel(id, { routing_strategy: "round-robin", cached_input_price_per_m_tokens: 0.05 });
    const res = await configured("GET");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/yaml; charset=utf-8");
    const text = await textOf(res);
    expect(text).toMatch(/^# Switchyard model catalogue/);
    expect(text).toContain("PUT /admin/models/configured");
    const doc = parse(text) as Doc;
    const ids = doc.models.map((m) => m.id);
    expect(ids).toEqual([...ids].sort());
    expect(doc.models.find((m) => m.id === id)).toEqual({
      id,
      family: "qwen",
      kind: "chat",
      context_length: 8192,
      input_price_per_m_tokens: 0.1,
      output_price_per_m_tokens: 0.6,
      cached_input_price_per_m_tokens: 0.05,
      audio_price_per_minute: null,
      cache_hit_price_factor: 0,
      active: true,
      routing_strategy: "round-robin",
      base_model: null,
      adapter_source: null,
      aliases: [],
    });

    const dry = await put(text);
    expect(dry).toEqual({ status: 200, body: { object: "catalogue.plan", dry_run: true, create: [], update: [], deactivate: [], unchanged: ids } });
    const applied = await put(text, "?apply=true");
    expect(applied).toEqual({ status: 200, body: { object: "catalogue.plan", dry_run: false, create: [], update: [], deactivate: [], unchanged: ids } });
    expect(await textOf(await configured("GET"))).toBe(text);
  });

  it("answers the plan of a document that adds, changes and drops models on a dry run, and writes nothing", async () => {
    const [a, b, c, d] = [fresh("doc-a"), fresh("doc-b"), fresh("doc-c"), fresh("doc-d")];
    await createModel(a);
    await createModel(b);
    const doc = await changedDocument(a, b, c, d);
    const plan = await put(doc);
    expect(plan.status).toBe(200);
    expect(plan.body).toMatchObject({
      object: "catalogue.plan",
      dry_run: true,
      create: [c, d].sort(),
      update: [{ id: a, changes: { output_price_per_m_tokens: { from: 0.6, to: 0.9 } } }],
      deactivate: [b],
    });
    expect(plan.body.unchanged).not.toContain(a);
    expect(plan.body.unchanged.length).toBe(doc.models.length - 3);

    expect((await admin("GET", `/models/${c}`)).status).toBe(404);
    expect((await admin("GET", `/models/${d}`)).status).toBe(404);
    expect((await admin("GET", `/models/${a}`)).body).toMatchObject({ output_price_per_m_tokens: 0.6 });
    expect((await admin("GET", `/models/${b}`)).body).toMatchObject({ active: true });
  });

  it("applies the plan with ?apply=true in one audited change, and /v1/models follows", async () => {
    const [a, b, c, d] = [fresh("doc-a"), fresh("doc-b"), fresh("doc-c"), fresh("doc-d")];
    await createModel(a);
    await createModel(b);
    await new Promise((r) => setTimeout(r, 1_100)); // ROUTING_CACHE_ISOLATE_SECONDS=1 in the test bindings
    expect(await listedModels()).toContain(b);

    const applied = await put(await changedDocument(a, b, c, d), "?apply=true");
    expect(applied.status).toBe(200);
    expect(applied.body).toMatchObject({ dry_run: false, create: [c, d].sort(), update: [{ id: a }], deactivate: [b] });

    expect((await admin("GET", `/models/${a}`)).body).toMatchObject({ output_price_per_m_tokens: 0.9 });
    expect((await admin("GET", `/models/${b}`)).body).toMatchObject({ active: false });
    // The adapter came before its base in the document; created without prices, it takes its base's.
    expect((await admin("GET", `/models/${d}`)).body).toMatchObject({
      base_model: c,
      adapter_source: `/adapters/${d}`,
      family: "llama",
      context_length: 16384,
      input_price_per_m_tokens: 0.2,
      output_price_per_m_tokens: 0.4,
    });
    await new Promise((r) => setTimeout(r, 1_100));
    const listed = await listedModels();
    expect(listed).toEqual(expect.arrayContaining([a, c, d]));
    expect(listed).not.toContain(b);

    const audit = expectStatus(await admin<List<{ action: string; actor: string; target_type: string; details: Record<string, unknown> }>>("GET", "/audit?target_id=models&limit=1"), 200);
    expect(audit.data[0]).toMatchObject({ action: "catalogue.apply", actor: "admin-token", target_type: "catalogue", details: { ...applied.body } });
    // Applying the same document again is a no-op.
    const again = await put(await exported(), "?apply=true");
    expect(again.body).toMatchObject({ create: [], update: [], deactivate: [] });
  });

  it("refuses invalid entries naming the entry and the field, and writes nothing", async () => {
    const base = fresh("doc-base");
    await createModel(base);
    const doc = await exported();
    const n = doc.models.length;
    const cases: [Entry, string, RegExp][] = [
      [{ id: fresh("doc-x"), context_length: -1 }, `models[${n}].context_length`, /Invalid models\[\d+\]\.context_length \(model 'doc-x-[^']+'\)/],
      [{ id: fresh("doc-x"), context_length: 10, colour: "red" }, `models[${n}].colour`, /Unknown field/],
      [{ id: fresh("doc-x") }, `models[${n}].context_length`, /required when creating a model/],
      [{ id: fresh("doc-x"), base_model: fresh("missing") }, `models[${n}].base_model`, /not in the catalogue/],
      [{ id: fresh("doc-x"), context_length: 10, adapter_source: "/a" }, `models[${n}].adapter_source`, /only a LoRA adapter/],
      [{ id: "bad id!", context_length: 10 }, `models[${n}].id`, /not a valid model id/],
      [{ id: base, context_length: 10 }, `models[${n}].id`, new RegExp(`'${base}' is already models\\[\\d+\\]`)],
    ];
    for (const [entry, param, message] of cases) {
      const res = await put<ErrorBody>({ models: [...doc.models, entry] }, "?apply=true");
      expect({ entry, status: res.status, param: res.body.error.param }).toEqual({ entry, status: 400, param });
      expect(res.body.error.message).toMatch(message);
    }
    const missingList = await put<ErrorBody>("{}");
    expect(missingList).toMatchObject({ status: 400, body: { error: { param: "models" } } });
    const unknownTop = await put<ErrorBody>("models: []\nextra: 1\n");
    expect(unknownTop).toMatchObject({ status: 400, body: { error: { param: "extra" } } });
    // Nothing of the refused documents was written.
    expect(await exported()).toEqual(doc);
  });

  it("refuses bad YAML, alias bombs, deep nesting and oversized bodies with 400 or 413", async () => {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
    for (let i = 0, prev = "a"; i < 9; prev = `b${i}`, i++) bomb += `b${i}: &b${i} [${Array(10).fill(`*${prev}`).join(", ")}]\n`;
    const bad: [string, string, RegExp][] = [
      ["syntax", "models: [\n  - id: x\n", /not a valid catalogue document/],
      ["alias bomb", bomb, /alias/i],
      ["deep flow nesting", "[".repeat(200_000), /nested deeper/],
      ["deep block nesting", "- ".repeat(200_000), /deeper than/],
      ["duplicate key", "models:\n  - id: x\n    id: y\n", /duplicate key 'id' \(line 3/],
      ["two documents", "models: []\n---\nmodels: []\n", /multiple documents/i],
      ["unknown tag", "models: !!js/function 'x'\n", /tag/i],
      ["not a map", "just text", /Invalid document|expected object/i],
    ];
    for (const [what, text, message] of bad) {
      const started = Date.now();
      const res = await put<ErrorBody>(text, "?apply=true");
      expect({ what, status: res.status, code: res.body.error.code }).toEqual({ what, status: 400, code: "invalid_value" });
      expect(res.body.error.message).toMatch(message);
      expect(Date.now() - started).toBeLessThan(2_000);
    }
    const binary = await configured("PUT", "", new Uint8Array([0x6d, 0x3a, 0x20, 0xff, 0xfe]));
    expect(binary.status).toBe(400);
    expect((await binary.json<ErrorBody>()).error.message).toMatch(/not UTF-8/);
    const big = await put<ErrorBody>(`models: []\n#${"x".repeat(1_000_001)}\n`);
    expect(big).toMatchObject({ status: 413, body: { error: { code: "request_too_large" } } });
  });

  it("is the operator's alone: 401 without a token, 403 for a tenant admin key", async () => {
    expect((await configured("GET", "", undefined, null)).status).toBe(401);
    expect((await configured("PUT", "", "models: []\n", null)).status).toBe(401);
    const s = await sandbox();
    const get = await configured("GET", "", undefined, s.adminKey);
    expect(get.status).toBe(403);
    expect(await get.json<ErrorBody>()).toMatchObject({ error: { code: "permission_denied" } });
    expect((await configured("PUT", "?apply=true", "models: []\n", s.adminKey)).status).toBe(403);
  });

  it("model export prints the document and model apply FILE prints the plan, applying only with --apply", async () => {
    const id = fresh("doc-cli");
    await createModel(id);
    const printed: string[] = [];
    // The CLI's API client, answered by this worker instead of over the network.
    const api = {
      baseUrl: "http://gateway.test",
      async request<T>(method: string, path: string, body?: unknown): Promise<T> {
        const res = await admin<T>(method, path, body);
        if (res.status >= 400) throw new Error(JSON.stringify(res.body));
        return res.body;
      },
    } as AdminApi;
    // Only the parts of a CommandContext the catalogue commands use.
    const ctx = (args: string[], flags: CommandContext["flags"] = {}): CommandContext =>
      ({
        api: () => api,
        args,
        flags,
        print: (line: string) => printed.push(line),
        warn: (line: string) => printed.push(line),
      }) as Partial<CommandContext> as CommandContext;
    const run = async (name: string, c: CommandContext): Promise<string> => {
      printed.length = 0;
      const command = catalogueCommands[name];
      if (!command) throw new Error(`no command ${name}`);
      await command(c);
      return printed.join("\n");
    };

    const yaml = await run("model export", ctx([]));
    expect(`${yaml}\n`).toBe(await textOf(await configured("GET")));
    const file = `/tmp/catalogue-${id}.yaml`;
    writeFileSync(file, yaml.replace(new RegExp(`(id: ${id}\\n(?:.*\\n)*?\\s+output_price_per_m_tokens:) 0\\.6`), "$1 0.7"));

    const dry = await run("model apply", ctx([file]));
    expect(dry).toContain("Dry run: nothing was written");
    expect(dry).toContain(`update      ${id}: output_price_per_m_tokens 0.6 -> 0.7`);
    expect((await admin("GET", `/models/${id}`)).body).toMatchObject({ output_price_per_m_tokens: 0.6 });

    const applied = await run("model apply", ctx([file], { apply: true }));
    expect(applied).toMatch(/^Applied:/);
    expect((await admin("GET", `/models/${id}`)).body).toMatchObject({ output_price_per_m_tokens: 0.7 });
  });
});
