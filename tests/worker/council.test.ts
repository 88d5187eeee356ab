import { describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import { usageRecords } from "../../schema/tables/index.ts";
import { admin, expectStatus, sandbox, unique, type ErrorBody, type KeyJson, type List } from "./admin-helpers.ts";
import { eventually, flushNow, gateway, post, query } from "./helpers.ts";
import { auditText } from "../../worker/src/council/outcome.ts";
import type { VoteAnswer } from "../../worker/src/council/run.ts";
import type { StoredVoteJson } from "../../worker/src/council/wire.ts";
import type { CouncilJson } from "../../worker/src/council/wire.ts";

const SPECIALISTS = ["crawdad", "gecko", "turtle", "eagle_eye", "spider", "peace_chief", "raven"];

async function sha256(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A council of two specialists on sim-llama-8b, the second optionally on another model or slowed. */
function twoSpecialists(second: { model?: string; sampling?: Record<string, number> } = {}) {
  return {
    specialists: [
      { name: "alpha", persona: "You are Alpha.", model: "sim-llama-8b", sampling: { max_tokens: 8 }, concern_tags: ["ALPHA CONCERN"] },
      { name: "beta", persona: "You are Beta.", model: second.model ?? "sim-llama-8b", sampling: second.sampling ?? { max_tokens: 8 }, concern_tags: ["BETA CONCERN"] },
    ],
    synthesiser: "alpha",
  };
}

describe("council votes", () => {
  it("asks the seven built-in specialists and the synthesiser, answers the vote, meters one row per call linked by the vote id, and stores the vote", async () => {
    const s = await sandbox();
    const question = "Should we add API usage logging?";
    const res = await post("/v1/council/vote", { question }, s.key);
    expect(res.status).toBe(200);
    const vote = await res.json<VoteAnswer>();
    expect(vote).toMatchObject({ object: "council.vote", council: "default", question, partial: false, failures: {} });
    expect(Object.keys(vote.responses).sort()).toEqual([...SPECIALISTS].sort());
    expect(typeof vote.consensus).toBe("string");
    expect(vote.consensus?.length).toBeGreaterThan(0);
    // The simulated model's text raises no tag: nothing to worry about.
    expect(vote.concerns).toEqual([]);
    expect(vote.recommendation).toBe("PROCEED");
    expect(vote.confidence).toBe(100);
    expect(vote.audit_hash).toBe(await sha256(auditText(question, vote.responses)));
    expect(vote.id).toMatch(/^vote_[0-9a-f]{32}$/);

    const rows = await eventually(async () => {
      await flushNow();
      const found = await query((db) => db.select().from(usageRecords).where(eq(usageRecords.voteId, vote.id)));
      return found.length === 8 ? found : undefined;
    }, 10_000);
    expect(rows.every((r) => r.status === "ok" && r.endpoint === "chat" && r.tenantId === s.tenantId && r.apiKeyId === s.keyId)).toBe(true);
    expect(rows.reduce((n, r) => n + r.promptTokens, 0)).toBe(vote.usage.prompt_tokens);
    expect(rows.reduce((n, r) => n + r.completionTokens, 0)).toBe(vote.usage.completion_tokens);

    const listed = await eventually(async () => {
      await flushNow();
      const page = await (await gateway("/v1/council/votes", { key: s.key })).json<List<StoredVoteJson>>();
      return page.data.length > 0 ? page : undefined;
    }, 10_000);
    expect(listed.data[0]).toMatchObject({ id: vote.id, question, recommendation: "PROCEED", audit_hash: vote.audit_hash, key_id: s.keyId });
    const one = await gateway(`/v1/council/votes/${vote.id}`, { key: s.key });
    expect(one.status).toBe(200);
    // Another tenant sees neither the vote nor it in a list.
    const other = await sandbox();
    expect((await gateway(`/v1/council/votes/${vote.id}`, { key: other.key })).status).toBe(404);
    expect((await (await gateway("/v1/council/votes", { key: other.key })).json<List<StoredVoteJson>>()).data).toEqual([]);
    // The operator sees it, and the tenant's admin key through the admin API.
    expect(expectStatus(await admin<List<StoredVoteJson>>("GET", `/council/votes?tenant_id=${s.tenantId}`), 200).data[0]?.id).toBe(vote.id);
    expect(expectStatus(await admin<List<StoredVoteJson>>("GET", "/council/votes", undefined, s.adminKey), 200).data.map((v) => v.id)).toEqual([vote.id]);
    expect((await admin("GET", `/council/votes?tenant_id=${s.tenantId}`, undefined, other.adminKey)).status).toBe(404);
  });

  it("refuses bad input with clear 400s: empty, too long, unknown council, unknown specialist, not JSON", async () => {
    const s = await sandbox();
    const empty = await post("/v1/council/vote", { question: "  " }, s.key);
    expect(empty.status).toBe(400);
    expect((await empty.json<ErrorBody>()).error.param).toBe("question");
    const long = await post("/v1/council/vote", { question: "x".repeat(8_001) }, s.key);
    expect(long.status).toBe(400);
    expect((await long.json<ErrorBody>()).error.message).toContain("8000");
    const unknown = await post("/v1/council/vote", { question: "q", council: "nope" }, s.key);
    expect(unknown.status).toBe(400);
    expect((await unknown.json<ErrorBody>()).error.message).toContain("Councils: default");
    const who = await post("/v1/council/specialist/owl", { question: "q" }, s.key);
    expect(who.status).toBe(400);
    expect((await who.json<ErrorBody>()).error.message).toContain("crawdad, gecko, turtle, eagle_eye, spider, peace_chief, raven");
    const bad = await gateway("/v1/council/vote", { method: "POST", body: "{nope", key: s.key });
    expect(bad.status).toBe(400);
  });

  it("asks one specialist", async () => {
    const s = await sandbox();
    const res = await post("/v1/council/specialist/crawdad", { question: "Is storing passwords in plain text fine?" }, s.key);
    expect(res.status).toBe(200);
    const body = await res.json<{ specialist: string; answer: string; concerns: string[]; usage: { completion_tokens: number } }>();
    expect(body.specialist).toBe("crawdad");
    expect(body.answer.length).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
  });

  it("reports a specialist that fails or runs out of time, and votes with the rest (partial), never a 500", async () => {
    const s = await sandbox();
    // beta's model is in the catalogue but no node serves it: it fails at once.
    expectStatus(await admin("PUT", `/councils/${s.tenantId}/broken`, twoSpecialists({ model: "hb-model" })), 201);
    const broken = await post("/v1/council/vote", { question: "q", council: "broken" }, s.key);
    expect(broken.status).toBe(200);
    const vote = await broken.json<VoteAnswer>();
    expect(vote.partial).toBe(true);
    expect(Object.keys(vote.responses)).toEqual(["alpha"]);
    expect(Object.keys(vote.failures)).toEqual(["beta"]);
    expect(typeof vote.consensus).toBe("string");
    // beta must write 3,000 tokens within a one-second deadline.
    expectStatus(await admin("PUT", `/councils/${s.tenantId}/hasty`, { ...twoSpecialists({ sampling: { max_tokens: 3000, min_tokens: 3000 } }), deadline_ms: 1000 }), 201);
    const started = Date.now();
    const hasty = await post("/v1/council/vote", { question: "q", council: "hasty" }, s.key);
    expect(hasty.status).toBe(200);
    const late = await hasty.json<VoteAnswer>();
    expect(late.failures.beta).toContain("did not answer within 1 s");
    expect(late.partial).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("reserves the whole fan-out against budgets up front", async () => {
    const s = await sandbox();
    expectStatus(await admin("POST", "/budgets", { scope: "tenant", scope_id: s.tenantId, kind: "tokens", period: "day", amount: 3_000 }), 201);
    // One small chat request fits the budget…
    const single = await post("/v1/chat/completions", { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 5 }, s.key);
    expect(single.status).toBe(200);
    // …seven specialists at up to 256 tokens each and a synthesis of up to the whole context do not.
    const vote = await post("/v1/council/vote", { question: "Should we?" }, s.key);
    expect(vote.status).toBe(429);
    expect((await vote.json<ErrorBody>()).error.code).toBe("insufficient_quota");
  });
});

describe("the council as a chat model", () => {
  it("is listed in /v1/models and answers /v1/chat/completions with its consensus, streamed or not", async () => {
    const s = await sandbox();
    const models = await (await gateway("/v1/models", { key: s.key })).json<List<{ id: string; kind: string; specialists?: string[] }>>();
    expect(models.data.find((m) => m.id === "council/default")).toMatchObject({ kind: "council", specialists: SPECIALISTS });
    const res = await post("/v1/chat/completions", { model: "council/default", messages: [{ role: "user", content: "Should we add API usage logging?" }] }, s.key);
    expect(res.status).toBe(200);
    const body = await res.json<{ model: string; choices: { message: { content: string } }[]; council_vote: { id: string; recommendation: string }; usage: { total_tokens: number } }>();
    expect(body.model).toBe("council/default");
    expect(body.choices[0]?.message.content.length).toBeGreaterThan(0);
    expect(body.council_vote.recommendation).toBe("PROCEED");
    expect(body.usage.total_tokens).toBeGreaterThan(0);

    const streamed = await post("/v1/chat/completions", { model: "council/default", messages: [{ role: "user", content: "And error logging?" }], stream: true, stream_options: { include_usage: true } }, s.key);
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get("content-type")).toContain("text/event-stream");
    const voteId = streamed.headers.get("x-switchyard-vote-id") ?? "";
    const text = await streamed.text();
    expect(text.trim().endsWith("data: [DONE]")).toBe(true);
    const content = text
      .split("\n\n")
      .filter((b) => b.startsWith("data: {"))
      .map((b) => JSON.parse(b.slice(6)) as { choices: { delta?: { content?: string } }[] })
      .map((c) => c.choices[0]?.delta?.content ?? "")
      .join("");
    expect(content.length).toBeGreaterThan(0);
    const stored = await eventually(async () => {
      await flushNow();
      const r = await gateway(`/v1/council/votes/${voteId}`, { key: s.key });
      return r.status === 200 ? r.json<StoredVoteJson>() : undefined;
    }, 10_000);
    expect(stored.consensus).toBe(content);
    const rows = await query((db) => db.select().from(usageRecords).where(eq(usageRecords.voteId, voteId)));
    expect(rows).toHaveLength(8);
  });

  it("is not listed, nor usable, for a key limited to other models", async () => {
    const s = await sandbox();
    const limited = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: s.environmentId, name: "embed-only", allowed_models: ["sim-embed"] }), 201);
    const models = await (await gateway("/v1/models", { key: limited.key ?? "" })).json<List<{ id: string }>>();
    expect(models.data.map((m) => m.id)).not.toContain("council/default");
    const res = await post("/v1/council/vote", { question: "q" }, limited.key ?? "");
    expect(res.status).toBe(400);
  });
});

describe("/admin/councils", () => {
  it("lists the built-in council, creates and replaces a tenant's own (checked, audited), and deletes it", async () => {
    const s = await sandbox();
    const list = expectStatus(await admin<List<CouncilJson>>("GET", `/councils/${s.tenantId}`), 200);
    expect(list.data.map((c) => [c.name, c.builtin])).toEqual([["default", true]]);
    expect(list.data[0]?.specialists.map((x) => x.name)).toEqual(SPECIALISTS);

    const noSynth = await admin<ErrorBody>("PUT", `/councils/${s.tenantId}/ops`, { ...twoSpecialists(), synthesiser: "gamma" });
    expect(noSynth.status).toBe(400);
    expect(noSynth.body.error.message).toContain("alpha, beta");
    const badModel = await admin<ErrorBody>("PUT", `/councils/${s.tenantId}/ops`, twoSpecialists({ model: "no-such-model" }));
    expect(badModel.status).toBe(400);
    expect(badModel.body.error.message).toContain("no-such-model");
    const twice = await admin<ErrorBody>("PUT", `/councils/${s.tenantId}/ops`, { specialists: [twoSpecialists().specialists[0], twoSpecialists().specialists[0]], synthesiser: "alpha" });
    expect(twice.status).toBe(400);

    // A tenant admin key manages its own tenant's councils.
    const created = expectStatus(await admin<CouncilJson>("PUT", `/councils/${s.tenantId}/ops`, twoSpecialists(), s.adminKey), 201);
    expect(created).toMatchObject({ name: "ops", builtin: false, synthesiser: "alpha", deadline_ms: 30_000, model: "council/ops" });
    const vote = await post("/v1/council/vote", { question: "q", council: "ops" }, s.key);
    expect(Object.keys((await vote.json<VoteAnswer>()).responses)).toEqual(["alpha", "beta"]);
    expectStatus(await admin<CouncilJson>("PUT", `/councils/${s.tenantId}/ops`, { ...twoSpecialists(), synthesiser: "beta" }), 200);
    const audit = expectStatus(await admin<List<{ action: string }>>("GET", `/audit?tenant_id=${s.tenantId}&limit=200`), 200).data.map((a) => a.action);
    expect(audit).toEqual(expect.arrayContaining(["council.create", "council.update"]));

    // Another tenant cannot see or change it.
    const other = await sandbox();
    expect((await admin("GET", `/councils/${s.tenantId}`, undefined, other.adminKey)).status).toBe(404);
    expect((await admin("PUT", `/councils/${s.tenantId}/ops`, twoSpecialists(), other.adminKey)).status).toBe(404);
    expect((await post("/v1/council/vote", { question: "q", council: "ops" }, other.key)).status).toBe(400);

    expectStatus(await admin("DELETE", `/councils/${s.tenantId}/ops`), 200);
    expect((await post("/v1/council/vote", { question: "q", council: "ops" }, s.key)).status).toBe(400);
    expect((await admin("DELETE", `/councils/${s.tenantId}/ops`)).status).toBe(404);
    void unique;
  });
});
