/** Helpers of the fleet admin tests: signed heartbeats of fresh nodes, and chat requests that say which node answered. */
import "../support/provided-context.ts";
import { env } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { HEARTBEAT_PATH, type Heartbeat } from "../../schema/contracts/heartbeat.ts";
import { NODE_HEADER, deriveNodeSecret, importSigningKey, signRequest } from "../../schema/contracts/signing.ts";
import { post } from "./helpers.ts";

/** A heartbeat of `nodeId` with one engine; `load` overrides the engine's figures. */
export function beat(nodeId: string, fields: Partial<Omit<Heartbeat, "nodeId" | "engines">> & { region: string; url: string; models: string[] }, load: Partial<Heartbeat["engines"][number]> = {}): Heartbeat {
  return {
    nodeId,
    status: "ready",
    intervalMs: 60_000,
    sentAt: Date.now(),
    ...fields,
    engines: [
      {
        id: "sim-0",
        kind: "sim",
        models: fields.models,
        healthy: true,
        circuit: "closed",
        inFlight: 0,
        queued: 0,
        maxConcurrency: 8,
        running: 0,
        waiting: 0,
        kvCacheUsage: 0.1,
        recentTtftMs: null,
        promptTokensTotal: null,
        generationTokensTotal: null,
        ...load,
      },
    ],
  };
}

/**
 * POSTs `body` to a node route (`/internal/nodes/…`) as node `nodeId` would: signed with its
 * derived secret (version 1, as a new node signs), or with `secret` when given.
 */
export async function signedNodeRequest(path: string, nodeId: string, body: unknown, secret?: string): Promise<Response> {
  const raw = JSON.stringify(body);
  return sendNodeRequest(path, raw, await signedNodeHeaders(path, nodeId, raw, secret));
}

/** The headers node `nodeId` puts on a POST of `raw` to `path` (a fresh nonce each call). */
export async function signedNodeHeaders(path: string, nodeId: string, raw: string, secret?: string): Promise<Record<string, string>> {
  const key = await importSigningKey(secret ?? (await deriveNodeSecret(env.NODE_SIGNING_SECRET, nodeId, 1)));
  return { "content-type": "application/json", [NODE_HEADER]: nodeId, ...(await signRequest(key, "POST", path, raw)) };
}

/** POSTs `raw` with exactly `headers` to a node route (e.g. to replay a captured request). */
export function sendNodeRequest(path: string, raw: string, headers: Record<string, string>): Promise<Response> {
  return exports.default.fetch(new Request(`http://gateway.test${path}`, { method: "POST", body: raw, headers }));
}

/** Sends a heartbeat signed with the node's derived secret; throws unless the gateway took it. */
export async function sendHeartbeat(hb: Heartbeat): Promise<Response> {
  const res = await signedNodeRequest(HEARTBEAT_PATH, hb.nodeId, hb);
  if (res.status !== 200) throw new Error(`heartbeat of ${hb.nodeId} refused: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
  return res;
}

/** One chat request for `model` with the seeded key: its status, error code and the node that served it. */
export async function chat(model: string): Promise<{ status: number; code: string | null; node: string | null }> {
  const res = await post("/v1/chat/completions", { model, messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
  const body = await res.json<{ error?: { code?: string } }>();
  return { status: res.status, code: body.error?.code ?? null, node: res.headers.get("x-switchyard-node") };
}

/** Polls `chat` until `accept` holds (admin changes reach routing within seconds); returns the last answer. */
export async function chatBecomes(model: string, accept: (r: Awaited<ReturnType<typeof chat>>) => boolean, withinMs = 5_000): Promise<Awaited<ReturnType<typeof chat>>> {
  const started = Date.now();
  for (;;) {
    const r = await chat(model);
    if (accept(r)) return r;
    if (Date.now() - started > withinMs) throw new Error(`chat for ${model} still answers ${JSON.stringify(r)} after ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A fresh node id (the registry's id rules: lowercase letters, digits, '.', '_', '-'). */
export function freshId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}
