import { describe, expect, it } from "vitest";
import { admin, expectStatus, sandbox, unique, type ErrorBody, type List } from "./admin-helpers.ts";
import { post } from "./helpers.ts";
import type { StreamProfileJson } from "../../worker/src/profiles/wire.ts";

interface AuditRow {
  action: string;
  target_id: string;
  details: { before: Record<string, unknown> | null; after: Record<string, unknown> | null };
}

/** The chunks of a profiled stream's body, without the usage chunk and [DONE]. */
async function contentChunks(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .map((b) => b.split("\n").find((l) => l.startsWith("data: "))?.slice(6))
    .filter((d): d is string => d !== undefined && d !== "[DONE]")
    .map((d) => JSON.parse(d) as { choices: { delta?: { content?: string } }[] })
    .map((c) => c.choices[0]?.delta?.content ?? "")
    .filter((t) => t !== "");
}

describe("/admin/stream-profiles", () => {
  it("lists the built-in profiles with their defaults and routes", async () => {
    const list = expectStatus(await admin<List<StreamProfileJson>>("GET", "/stream-profiles"), 200);
    const byName = Object.fromEntries(list.data.map((p) => [p.name, p]));
    expect(byName.voice).toMatchObject({ chunk_tokens: 1, timeout_ms: 30_000, buffer_tokens: 50, interval_ms: 10, builtin: true, route: "/v1/voice/chat/completions" });
    expect(byName.copilot).toMatchObject({ chunk_tokens: 5, timeout_ms: 60_000, buffer_tokens: 200, interval_ms: 50, builtin: true, route: "/v1/copilot/completions" });
    expect(byName.gui).toMatchObject({ chunk_tokens: 10, timeout_ms: 120_000, buffer_tokens: 500, interval_ms: 100, builtin: true, route: "/v1/gui/chat/completions" });
  });

  it("creates an operator profile (all four settings needed, checked, audited) that the gateway serves at /v1/agents/stream", async () => {
    const name = unique("agent").toLowerCase();
    const partial = await admin<ErrorBody>("PUT", `/stream-profiles/${name}`, { chunk_tokens: 4 });
    expect(partial.status).toBe(400);
    expect(partial.body.error.message).toContain("timeout_ms");
    const small = await admin<ErrorBody>("PUT", `/stream-profiles/${name}`, { chunk_tokens: 8, buffer_tokens: 4, interval_ms: 0, timeout_ms: 10_000 });
    expect(small.status).toBe(400);
    expect(small.body.error.param).toBe("buffer_tokens");
    expect((await admin<ErrorBody>("PUT", `/stream-profiles/${name}`, { chunk_tokens: 0, buffer_tokens: 4, interval_ms: 0, timeout_ms: 10_000 })).status).toBe(400);
    expect((await admin<ErrorBody>("PUT", "/stream-profiles/Bad Name!", { chunk_tokens: 4, buffer_tokens: 4, interval_ms: 0, timeout_ms: 10_000 })).status).toBe(400);

    const created = expectStatus(await admin<StreamProfileJson>("PUT", `/stream-profiles/${name}`, { chunk_tokens: 4, buffer_tokens: 40, interval_ms: 0, timeout_ms: 10_000 }), 201);
    expect(created).toMatchObject({ name, chunk_tokens: 4, builtin: false, route: `/v1/agents/stream?type=${name}` });
    const audit = expectStatus(await admin<List<AuditRow>>("GET", `/audit?target_id=${name}`), 200).data;
    expect(audit[0]).toMatchObject({ action: "stream_profile.create", target_id: name, details: { before: null, after: expect.objectContaining({ chunk_tokens: 4 }) as unknown } });

    const s = await sandbox();
    const res = await post(`/v1/agents/stream?type=${name}`, { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 12, ignore_eos: true }, s.key);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-switchyard-profile")).toBe(name);
    expect(await contentChunks(res)).toHaveLength(3);

    const updated = expectStatus(await admin<StreamProfileJson>("PUT", `/stream-profiles/${name}`, { chunk_tokens: 6 }), 200);
    expect(updated).toMatchObject({ chunk_tokens: 6, buffer_tokens: 40, timeout_ms: 10_000 });
    expectStatus(await admin("DELETE", `/stream-profiles/${name}`), 200);
    const gone = await post(`/v1/agents/stream?type=${name}`, { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }] }, s.key);
    expect(gone.status).toBe(404);
    expect(await gone.text()).toContain("voice, copilot, gui");
    expect((await admin("DELETE", `/stream-profiles/${name}`)).status).toBe(404);
  });

  it("overrides a built-in and resets it; a built-in without an override cannot be removed", async () => {
    const changed = expectStatus(await admin<StreamProfileJson>("PUT", "/stream-profiles/gui", { chunk_tokens: 20 }), 200);
    expect(changed).toMatchObject({ name: "gui", chunk_tokens: 20, buffer_tokens: 500, builtin: true, overridden: true });
    const reset = expectStatus(await admin<StreamProfileJson & { reset: boolean }>("DELETE", "/stream-profiles/gui"), 200);
    expect(reset).toMatchObject({ chunk_tokens: 10, overridden: false, reset: true });
    const again = await admin<ErrorBody>("DELETE", "/stream-profiles/gui");
    expect(again.status).toBe(409);
    expect(again.body.error.message).toContain("PUT changes it");
  });

  it("lets a tenant admin read the profiles but not change them", async () => {
    const s = await sandbox();
    expectStatus(await admin("GET", "/stream-profiles", undefined, s.adminKey), 200);
    expect((await admin("PUT", "/stream-profiles/voice", { chunk_tokens: 2 }, s.adminKey)).status).toBe(403);
    expect((await admin("DELETE", "/stream-profiles/voice", undefined, s.adminKey)).status).toBe(403);
  });

  it("refuses what a profile cannot serve: several choices, a list of prompts, a body that is not JSON", async () => {
    const s = await sandbox();
    const n = await post("/v1/gui/chat/completions", { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], n: 3 }, s.key);
    expect(n.status).toBe(400);
    const prompts = await post("/v1/copilot/completions", { model: "sim-llama-8b", prompt: ["a", "b"] }, s.key);
    expect(prompts.status).toBe(400);
    expect(await prompts.text()).toContain("one choice");
    const bad = await post("/v1/voice/chat/completions", "not json", s.key);
    expect(bad.status).toBe(400);
  });
});
