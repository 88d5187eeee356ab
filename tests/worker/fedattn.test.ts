import "../support/provided-context.ts";
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { decodeContribution, encodeContribution, tensorToFloat32 } from "../../schema/contracts/fedattn-tensors.ts";
import { NODE_HEADER, deriveNodeSecret, importSigningKey, signRequest } from "../../schema/contracts/signing.ts";
import { eq } from "drizzle-orm";
import { fedattnContributions, fedattnSessions } from "../../schema/tables/index.ts";
import { eventually, flushNow, query } from "./helpers.ts";
import { admin, expectStatus, sandbox } from "./admin-helpers.ts";

// The federated-attention coordinator (worker/src/fedattn/, docs/fedattn.md): sessions in Durable
// Objects, every call signed by a node exactly like a heartbeat.

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

interface SessionSummary {
  session_id: string;
  participants: string[];
  pending_contributions: number;
  pending: { participant: string; block_start: number; block_end: number; bytes: number }[];
  total_syncs: number;
}

let counter = 0;
/** A node id unique to this run, so sessions and nonces of other tests never meet. */
function nodeName(label: string): string {
  counter += 1;
  return `fa-${label}-${Date.now().toString(36)}-${counter}`;
}

/** A request to the gateway signed as `nodeId` (with its derived secret, or `secret`). */
async function signed(method: string, path: string, nodeId: string, body: string | Uint8Array<ArrayBuffer> = "", opts: { secret?: string; contentType?: string } = {}): Promise<Response> {
  const key = await importSigningKey(opts.secret ?? (await deriveNodeSecret(env.NODE_SIGNING_SECRET, nodeId, 1)));
  const headers: Record<string, string> = { [NODE_HEADER]: nodeId, ...(await signRequest(key, method, path, body)) };
  headers["content-type"] = opts.contentType ?? (typeof body === "string" ? "application/json" : "application/octet-stream");
  return exports.default.fetch(new Request(`http://gateway.test${path}`, { method, headers, body: method === "GET" ? undefined : body }));
}

async function json<T>(res: Response): Promise<T> {
  return res.json<T>();
}

async function startSession(initiator: string): Promise<string> {
  const res = await signed("POST", "/v1/fedattn/sessions", initiator, JSON.stringify({ initiator_node: initiator }));
  expect(res.status).toBe(200);
  const body = await json<{ session_id: string; status: string; participants: string[]; sync_interval: number }>(res);
  expect(body).toMatchObject({ status: "active", participants: [initiator], sync_interval: 8 });
  return body.session_id;
}

async function join(id: string, node: string): Promise<Response> {
  return signed("POST", `/v1/fedattn/sessions/${id}/join`, node, JSON.stringify({ participant_node: node }));
}

function message(weight: number, k: number[], v: number[], kShape = [k.length], blocks: [number, number] = [0, 7]): Uint8Array<ArrayBuffer> {
  const bytes = encodeContribution({ blockStart: blocks[0], blockEnd: blocks[1], weight, dtype: "float32", k: { shape: kShape, data: new Float32Array(k) }, v: { shape: [v.length], data: new Float32Array(v) } });
  return new Uint8Array(bytes);
}

function contribute(id: string, node: string, body: Uint8Array<ArrayBuffer>): Promise<Response> {
  return signed("POST", `/v1/fedattn/sessions/${id}/contribute`, node, body);
}

async function threeNodeSession(): Promise<{ id: string; nodes: [string, string, string] }> {
  const nodes: [string, string, string] = [nodeName("a"), nodeName("b"), nodeName("c")];
  const id = await startSession(nodes[0]);
  for (const n of nodes.slice(1)) expect((await join(id, n)).status).toBe(200);
  return { id, nodes };
}

describe("federated attention sessions", () => {
  it("averages three participants' K and V by their weights and clears the pending set", async () => {
    const { id, nodes } = await threeNodeSession();
    const inputs = [
      { w: 1, k: [1, 2, 3, 4], v: [10, 20] },
      { w: 1, k: [3, 4, 5, 6], v: [30, 40] },
      { w: 2, k: [5, 0, -1, 2], v: [50, -60] },
    ];
    for (const [i, n] of nodes.entries()) {
      const input = inputs[i];
      if (!input) throw new Error("missing input");
      const res = await contribute(id, n, message(input.w, input.k, input.v, [2, 2]));
      expect(res.status).toBe(200);
      const body = await json<{ status: string; latency_ms: number; total_contributions: number }>(res);
      expect(body).toMatchObject({ status: "received", total_contributions: i + 1 });
      expect(body.latency_ms).toBeGreaterThanOrEqual(0);
    }
    const res = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate`, nodes[1]);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    const out = decodeContribution(new Uint8Array(await res.arrayBuffer()));
    expect(out).toMatchObject({ blockStart: 0, blockEnd: 7, weight: 4, dtype: "float32" });
    expect(out.k.shape).toEqual([2, 2]);
    const expectK = [0, 1, 2, 3].map((i) => inputs.reduce((s, x) => s + (x.w / 4) * (x.k[i] ?? 0), 0));
    const expectV = [0, 1].map((i) => inputs.reduce((s, x) => s + (x.w / 4) * (x.v[i] ?? 0), 0));
    [...tensorToFloat32(out.k)].forEach((x, i) => expect(x).toBeCloseTo(expectK[i] ?? NaN, 5));
    [...tensorToFloat32(out.v)].forEach((x, i) => expect(x).toBeCloseTo(expectV[i] ?? NaN, 5));

    expect(res.headers.get("x-fedattn-computed")).toBe("true");
    expect(res.headers.get("x-fedattn-participants")).toBe(nodes.join(","));

    // The other two participants get that same aggregate (not computed again), then the next sync starts empty.
    const first = new Uint8Array(encodeContribution(out));
    for (const n of [nodes[0], nodes[2]]) {
      const owed = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate`, n);
      expect(owed.status).toBe(200);
      expect(owed.headers.get("x-fedattn-computed")).toBe("false");
      expect(new Uint8Array(await owed.arrayBuffer())).toEqual(first);
    }
    const again = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate`, nodes[0]);
    expect(again.status).toBe(400);
    expect((await json<ErrorBody>(again)).error.code).toBe("no_contributions");
  });

  it("with wait_ms, holds the aggregate until every participant has contributed, and answers everyone the same", async () => {
    const { id, nodes } = await threeNodeSession();
    expect((await contribute(id, nodes[0], message(1, [0, 0], [3]))).status).toBe(200);
    // The first participant asks at once; the others contribute while it waits.
    const waiting = signed("POST", `/v1/fedattn/sessions/${id}/aggregate?wait_ms=10000`, nodes[0]);
    await new Promise((r) => setTimeout(r, 100));
    expect((await contribute(id, nodes[1], message(1, [3, 6], [6]))).status).toBe(200);
    expect((await contribute(id, nodes[2], message(1, [6, 3], [0]))).status).toBe(200);
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(res.headers.get("x-fedattn-participants")).toBe(nodes.join(","));
    expect(res.headers.get("x-fedattn-missing")).toBe("");
    const out = decodeContribution(new Uint8Array(await res.arrayBuffer()));
    expect([...tensorToFloat32(out.k)]).toEqual([3, 3]);
    expect([...tensorToFloat32(out.v)]).toEqual([3]);
    for (const n of nodes.slice(1)) {
      const owed = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate?wait_ms=10000`, n);
      expect(owed.status).toBe(200);
      expect([...tensorToFloat32(decodeContribution(new Uint8Array(await owed.arrayBuffer())).k)]).toEqual([3, 3]);
    }
  });

  it("past wait_ms, averages the participants that did contribute and names the missing one", async () => {
    const { id, nodes } = await threeNodeSession();
    await (await contribute(id, nodes[0], message(1, [1], [1]))).arrayBuffer();
    await (await contribute(id, nodes[1], message(1, [3], [3]))).arrayBuffer();
    const res = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate?wait_ms=300`, nodes[1]);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-fedattn-participants")).toBe(`${nodes[0]},${nodes[1]}`);
    expect(res.headers.get("x-fedattn-missing")).toBe(nodes[2]);
    expect([...tensorToFloat32(decodeContribution(new Uint8Array(await res.arrayBuffer())).k)]).toEqual([2]);
    const bad = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate?wait_ms=60001`, nodes[1]);
    expect(bad.status).toBe(400);
    expect((await json<ErrorBody>(bad)).error.param).toBe("wait_ms");
  });

  it("goes on when a participant leaves: its contribution is dropped, it cannot take part any more, and the last one out ends the session", async () => {
    const { id, nodes } = await threeNodeSession();
    await (await contribute(id, nodes[2], message(1, [100], [100]))).arrayBuffer();
    await (await contribute(id, nodes[0], message(1, [1], [1]))).arrayBuffer();
    // nodes[0] waits for the others; nodes[2] leaving instead of waiting must not hold it up past nodes[1].
    const waiting = signed("POST", `/v1/fedattn/sessions/${id}/aggregate?wait_ms=10000`, nodes[0]);
    await new Promise((r) => setTimeout(r, 100));
    const left = await signed("POST", `/v1/fedattn/sessions/${id}/leave`, nodes[2], JSON.stringify({ participant_node: nodes[2] }));
    expect(left.status).toBe(200);
    expect(await json<unknown>(left)).toEqual({ status: "left", participants: [nodes[0], nodes[1]], session_status: "active" });
    await (await contribute(id, nodes[1], message(1, [3], [3]))).arrayBuffer();
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(res.headers.get("x-fedattn-participants")).toBe(`${nodes[0]},${nodes[1]}`);
    expect([...tensorToFloat32(decodeContribution(new Uint8Array(await res.arrayBuffer())).k)]).toEqual([2]);

    const late = await contribute(id, nodes[2], message(1, [1], [1]));
    expect(late.status).toBe(403);
    await late.arrayBuffer();
    // The session keeps working for those who stayed.
    await (await contribute(id, nodes[0], message(1, [5], [5], [1], [8, 15]))).arrayBuffer();
    await (await contribute(id, nodes[1], message(1, [7], [7], [1], [8, 15]))).arrayBuffer();
    const next = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate?block_start=8&block_end=15`, nodes[1]);
    expect(next.status).toBe(200);
    expect([...tensorToFloat32(decodeContribution(new Uint8Array(await next.arrayBuffer())).k)]).toEqual([6]);

    for (const n of [nodes[0], nodes[1]]) await (await signed("POST", `/v1/fedattn/sessions/${id}/leave`, n, JSON.stringify({ participant_node: n }))).arrayBuffer();
    const gone = await join(id, nodes[0]);
    expect(gone.status).toBe(404);
    await gone.arrayBuffer();
  });

  it("lets a node join twice without listing it twice", async () => {
    const a = nodeName("a");
    const b = nodeName("b");
    const id = await startSession(a);
    await (await join(id, b)).arrayBuffer();
    const res = await join(id, b);
    expect(res.status).toBe(200);
    expect(await json<unknown>(res)).toEqual({ status: "joined", participants: [a, b] });
  });

  it("refuses a node that has not joined with 403, for contributing and for the aggregate", async () => {
    const a = nodeName("a");
    const stranger = nodeName("x");
    const id = await startSession(a);
    const res = await contribute(id, stranger, message(1, [1], [1]));
    expect(res.status).toBe(403);
    expect((await json<ErrorBody>(res)).error.code).toBe("permission_denied");
    const agg = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate`, stranger);
    expect(agg.status).toBe(403);
    await agg.arrayBuffer();
  });

  it("refuses unsigned and wrongly signed calls with 401, and a body naming another node with 403", async () => {
    const a = nodeName("a");
    const unsigned = await exports.default.fetch(
      new Request("http://gateway.test/v1/fedattn/sessions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ initiator_node: a }) }),
    );
    expect(unsigned.status).toBe(401);
    expect((await json<ErrorBody>(unsigned)).error.code).toBe("invalid_api_key");
    const wrong = await signed("POST", "/v1/fedattn/sessions", a, JSON.stringify({ initiator_node: a }), { secret: "w".repeat(64) });
    expect(wrong.status).toBe(401);
    await wrong.arrayBuffer();
    const other = await signed("POST", "/v1/fedattn/sessions", a, JSON.stringify({ initiator_node: "someone-else" }));
    expect(other.status).toBe(403);
    expect((await json<ErrorBody>(other)).error.param).toBe("initiator_node");
  });

  it("refuses a contribution whose shape differs from the others' with 400 naming the participant", async () => {
    const { id, nodes } = await threeNodeSession();
    await (await contribute(id, nodes[0], message(1, [1, 2, 3, 4], [1, 2], [2, 2]))).arrayBuffer();
    const res = await contribute(id, nodes[1], message(1, [1, 2, 3, 4], [1, 2], [4]));
    expect(res.status).toBe(400);
    const body = await json<ErrorBody>(res);
    expect(body.error.code).toBe("shape_mismatch");
    expect(body.error.message).toContain(nodes[1]);
    expect(body.error.message).toContain(nodes[0]);
  });

  it("refuses a malformed message with 400 naming the field, and the same block range twice with 409", async () => {
    const a = nodeName("a");
    const id = await startSession(a);
    const bad = message(1, [1], [1]);
    bad[0] = 0x58;
    const res = await contribute(id, a, bad);
    expect(res.status).toBe(400);
    expect((await json<ErrorBody>(res)).error.param).toBe("magic");
    await (await contribute(id, a, message(1, [1], [1]))).arrayBuffer();
    const dup = await contribute(id, a, message(1, [2], [2]));
    expect(dup.status).toBe(409);
    expect((await json<ErrorBody>(dup)).error.code).toBe("duplicate_contribution");
  });

  it("answers 404 to a contribution after the session ended", async () => {
    const a = nodeName("a");
    const id = await startSession(a);
    const end = await signed("POST", `/v1/fedattn/sessions/${id}/end`, a, "{}");
    expect(end.status).toBe(200);
    const ended = await json<{ status: string; duration_seconds: number; participants: string[] }>(end);
    expect(ended).toMatchObject({ status: "ended", participants: [a] });
    expect(ended.duration_seconds).toBeGreaterThanOrEqual(0);
    const res = await contribute(id, a, message(1, [1], [1]));
    expect(res.status).toBe(404);
    expect((await json<ErrorBody>(res)).error.code).toBe("not_found");
  });

  it("lists active sessions with participants and pending counts for the admin token, which cannot contribute", async () => {
    const { id, nodes } = await threeNodeSession();
    await (await contribute(id, nodes[2], message(1, [1, 2], [3]))).arrayBuffer();
    const adminAuth = { authorization: `Bearer ${inject("adminToken")}` };
    const res = await exports.default.fetch(new Request("http://gateway.test/v1/fedattn/sessions/active", { headers: adminAuth }));
    expect(res.status).toBe(200);
    const list = await json<{ data: SessionSummary[] }>(res);
    const mine = list.data.find((s) => s.session_id === id);
    expect(mine).toMatchObject({ participants: nodes, pending_contributions: 1, total_syncs: 0 });
    expect(mine?.pending).toEqual([{ participant: nodes[2], block_start: 0, block_end: 7, bytes: 52 }]);

    // A participant sees its own sessions only.
    const asNode = await signed("GET", "/v1/fedattn/sessions/active", nodes[0]);
    expect(asNode.status).toBe(200);
    expect((await json<{ data: SessionSummary[] }>(asNode)).data.map((s) => s.session_id)).toEqual([id]);

    const byAdmin = await exports.default.fetch(
      new Request(`http://gateway.test/v1/fedattn/sessions/${id}/contribute`, { method: "POST", headers: { ...adminAuth, "content-type": "application/octet-stream" }, body: message(1, [1, 2], [3]) }),
    );
    expect(byAdmin.status).toBe(403);
    expect((await json<ErrorBody>(byAdmin)).error.code).toBe("permission_denied");
  });

  it("answers 413 before reading a body declared over the cap", async () => {
    const res = await exports.default.fetch(
      new Request("http://gateway.test/v1/fedattn/sessions/fa_x/contribute", { method: "POST", headers: { "content-length": String(65 * 1024 * 1024), "content-type": "application/octet-stream" }, body: "x" }),
    );
    expect(res.status).toBe(413);
    expect((await json<ErrorBody>(res)).error.code).toBe("request_too_large");
  });

  it("ends a session idle past its timeout when its alarm fires, and drops it from the active list", async () => {
    const a = nodeName("a");
    const id = await startSession(a);
    const stub = env.FEDATTN_SESSIONS.get(env.FEDATTN_SESSIONS.idFromName(id));
    // As if the last request had come long ago (FEDATTN_IDLE_TIMEOUT_SECONDS is 300 here).
    await runInDurableObject(stub, (instance) => {
      const meta = (instance as unknown as { meta: { lastActivityAt: number } | null }).meta;
      if (meta) meta.lastActivityAt = 0;
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const res = await contribute(id, a, message(1, [1], [1]));
    expect(res.status).toBe(404);
    await res.arrayBuffer();
    const list = await exports.default.fetch(new Request("http://gateway.test/v1/fedattn/sessions/active", { headers: { authorization: `Bearer ${inject("adminToken")}` } }));
    expect((await json<{ data: SessionSummary[] }>(list)).data.map((s) => s.session_id)).not.toContain(id);
  });

  it("records the session and every contribution in Postgres (no tensors) and adds the sync to the histograms of /admin/metrics", async () => {
    const adminAuth = { authorization: `Bearer ${inject("adminToken")}` };
    const metric = async (line: string): Promise<number> => {
      const text = await (await exports.default.fetch(new Request("http://gateway.test/admin/metrics", { headers: adminAuth }))).text();
      return Number(new RegExp(`^${line.replace(/[{}"+.]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    };
    const syncsBefore = await metric("switchyard_fedattn_sync_duration_seconds_count");
    const bigBefore = await metric('switchyard_fedattn_contribution_size_bytes_bucket{le="65536"}');
    const { id, nodes } = await threeNodeSession();
    const sizes: number[] = [];
    for (const [i, n] of nodes.entries()) {
      const body = message(i + 1, [i, i], [i]);
      sizes.push(body.byteLength);
      await (await contribute(id, n, body)).arrayBuffer();
    }
    const agg = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate`, nodes[0]);
    expect(agg.status).toBe(200);
    expect(Number(agg.headers.get("x-fedattn-sync-latency-ms"))).toBeGreaterThanOrEqual(0);
    await agg.arrayBuffer();
    await (await signed("POST", `/v1/fedattn/sessions/${id}/leave`, nodes[2], JSON.stringify({ participant_node: nodes[2] }))).arrayBuffer();
    const end = await signed("POST", `/v1/fedattn/sessions/${id}/end`, nodes[0], "{}");
    expect(end.status).toBe(200);
    await end.arrayBuffer();

    const session = await eventually(async () => {
      await flushNow();
      const [row] = await query((db) => db.select().from(fedattnSessions).where(eq(fedattnSessions.id, id)));
      return row?.status === "ended" && row.totalSyncs === 1 && row.averageSyncLatencyMs !== null ? row : undefined;
    }, 15_000);
    expect(session).toMatchObject({ initiator: nodes[0], participants: nodes, departed: [nodes[2]], syncInterval: 8, privacyMode: true, status: "ended" });
    expect(session.endedAt).not.toBeNull();
    const contributions = await eventually(async () => {
      await flushNow();
      const rows = await query((db) => db.select().from(fedattnContributions).where(eq(fedattnContributions.sessionId, id)));
      return rows.length === 3 ? rows : undefined;
    }, 15_000);
    const byNode = new Map(contributions.map((r) => [r.participant, r]));
    for (const [i, n] of nodes.entries()) {
      expect(byNode.get(n)).toMatchObject({ blockStart: 0, blockEnd: 7, sizeBytes: sizes[i], dtype: "float32", weight: i + 1 });
    }

    // The operator reads the records through the admin API; a tenant admin cannot.
    const recorded = expectStatus(await admin<{ id: string; status: string; departed: string[]; contributions: { participant: string; size_bytes: number }[] }>("GET", `/fedattn/sessions/${id}`), 200);
    expect(recorded).toMatchObject({ id, status: "ended", departed: [nodes[2]] });
    expect(recorded.contributions.map((x) => x.participant).sort()).toEqual([...nodes].sort());
    const listed = expectStatus(await admin<{ data: { id: string }[] }>("GET", `/fedattn/sessions?node=${nodes[1]}&status=ended`), 200);
    expect(listed.data.map((x) => x.id)).toEqual([id]);
    const tenant = await sandbox();
    expect((await admin("GET", "/fedattn/sessions", undefined, tenant.adminKey)).status).toBe(403);
    expect((await admin("GET", "/fedattn/sessions/fa_nope")).status).toBe(404);

    // The gateway's histograms (flushed to Redis after each call, read across isolates).
    await eventually(async () => ((await metric("switchyard_fedattn_sync_duration_seconds_count")) >= syncsBefore + 1 ? true : undefined));
    expect(await metric('switchyard_fedattn_contribution_size_bytes_bucket{le="65536"}')).toBeGreaterThanOrEqual(bigBefore + 3);
    expect(await metric('switchyard_fedattn_sync_duration_seconds_bucket{le="+Inf"}')).toBeGreaterThanOrEqual(syncsBefore + 1);
    expect(await metric("switchyard_fedattn_aggregate_size_bytes_count")).toBeGreaterThanOrEqual(1);
  });

  it("refuses a contribution that would take the session past FEDATTN_MAX_PENDING_MB (96 in wrangler.toml) with 413, and keeps the others", async () => {
    const { id, nodes } = await threeNodeSession();
    const elements = (50 * 1024 * 1024) / 4 / 2;
    const big = () => new Uint8Array(encodeContribution({ blockStart: 0, blockEnd: 7, weight: 1, dtype: "float32", k: { shape: [elements], data: new Float32Array(elements) }, v: { shape: [elements], data: new Float32Array(elements) } }));
    expect((await contribute(id, nodes[0], big())).status).toBe(200);
    const over = await contribute(id, nodes[1], big());
    expect(over.status).toBe(413);
    const error = (await json<ErrorBody>(over)).error;
    expect(error.code).toBe("request_too_large");
    expect(error.message).toContain("FEDATTN_MAX_PENDING_MB");
    const list = await signed("GET", "/v1/fedattn/sessions/active", nodes[0]);
    const mine = (await json<{ data: SessionSummary[] }>(list)).data.find((x) => x.session_id === id);
    expect(mine?.pending.map((p) => p.participant)).toEqual([nodes[0]]);
  });

  it("refuses a participant past FEDATTN_MAX_PARTICIPANTS (64) with 409 session_full", async () => {
    const a = nodeName("a");
    const id = await startSession(a);
    for (let i = 1; i < 64; i++) await (await join(id, nodeName(`p${i}`))).arrayBuffer();
    const res = await join(id, nodeName("late"));
    expect(res.status).toBe(409);
    expect((await json<ErrorBody>(res)).error.code).toBe("session_full");
  });

  it("in privacy mode (the default) gives an aggregate only to participants whose contribution is in it; without it, to any participant", async () => {
    const { id, nodes } = await threeNodeSession();
    await (await contribute(id, nodes[0], message(1, [1], [1]))).arrayBuffer();
    await (await contribute(id, nodes[1], message(1, [3], [3]))).arrayBuffer();
    const refused = await signed("POST", `/v1/fedattn/sessions/${id}/aggregate`, nodes[2]);
    expect(refused.status).toBe(403);
    expect((await json<ErrorBody>(refused)).error.message).toContain("privacy mode");

    const [a, b, c] = [nodeName("a"), nodeName("b"), nodeName("c")];
    const open = await signed("POST", "/v1/fedattn/sessions", a, JSON.stringify({ initiator_node: a, privacy_mode: false }));
    const openId = (await json<{ session_id: string; privacy_mode: boolean }>(open)).session_id;
    for (const n of [b, c]) await (await join(openId, n)).arrayBuffer();
    await (await contribute(openId, a, message(1, [1], [1]))).arrayBuffer();
    await (await contribute(openId, b, message(1, [3], [3]))).arrayBuffer();
    const read = await signed("POST", `/v1/fedattn/sessions/${openId}/aggregate`, c);
    expect(read.status).toBe(200);
    expect([...tensorToFloat32(decodeContribution(new Uint8Array(await read.arrayBuffer())).k)]).toEqual([2]);
  });
});
