/**
 * What the soak test sends and measures: a mix of OpenAI-client traffic and admin calls against a
 * running stack, and samples of the stack's Postgres connections and memory.
 */
import { readdirSync, readFileSync } from "node:fs";
import OpenAI from "openai";
import type { Stack } from "../../dev/stack.ts";

/** One failed call, kept for the report. */
export interface Failure {
  at: string;
  what: string;
  error: string;
}

/** Counts of what was sent, by kind. */
export type Sent = Record<string, number>;

/** Sends chat (streamed and not), completions, embeddings and profiled streams (read whole, or left after the first chunk) through the official client until `until`, one call per `intervalMs` at most. */
export async function callerLoop(stack: Stack, until: number, intervalMs: number, sent: Sent, failures: Failure[], location?: string): Promise<void> {
  const client = new OpenAI({
    baseURL: `${stack.gatewayUrl}/v1`,
    apiKey: stack.apiKey,
    maxRetries: 0,
    timeout: 30_000,
    defaultHeaders: location ? { "x-switchyard-client-location": location } : undefined,
  });
  const kinds: [string, () => Promise<unknown>][] = [
    ["chat", () => client.chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: "soak" }], max_tokens: 16 })],
    [
      "chat-stream",
      async () => {
        const stream = await client.chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: "soak" }], max_tokens: 16, stream: true });
        let chunks = 0;
        for await (const _chunk of stream) chunks++;
        if (chunks === 0) throw new Error("the stream had no chunks");
      },
    ],
    ["completion", () => client.completions.create({ model: "sim-llama-8b", prompt: "soak", max_tokens: 16 })],
    ["embedding", () => client.embeddings.create({ model: "sim-embed", input: ["soak", "test"] })],
    [
      "voice-stream",
      async () => {
        const voice = client.withOptions({ baseURL: `${stack.gatewayUrl}/v1/voice` });
        const stream = await voice.chat.completions.create({ model: "sim-llama-8b", messages: [{ role: "user", content: "soak" }], max_tokens: 16, stream: true });
        let chunks = 0;
        for await (const _chunk of stream) chunks++;
        if (chunks === 0) throw new Error("the profiled stream had no chunks");
      },
    ],
    [
      // A profiled stream the client leaves after its first chunk: the backplane's re-chunker, its
      // timers and the engine's slot must all be released.
      "gui-stream-cancelled",
      async () => {
        const controller = new AbortController();
        const res = await fetch(`${stack.gatewayUrl}/v1/gui/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json", ...(location ? { "x-switchyard-client-location": location } : {}) },
          body: JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: "soak" }], max_tokens: 400 }),
          signal: controller.signal,
        });
        if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
        await (res.body as ReadableStream<Uint8Array> | null)?.getReader().read();
        controller.abort();
      },
    ],
  ];
  for (let i = 0; Date.now() < until; i++) {
    const entry = kinds[i % kinds.length];
    if (!entry) break;
    const [what, call] = entry;
    const started = Date.now();
    await record(what, call, sent, failures);
    await new Promise((r) => setTimeout(r, Math.max(0, started + intervalMs - Date.now())));
  }
}

/** Calls the admin API and the deep health check in turn, one every `everyMs`, until `until`. */
export async function adminLoop(stack: Stack, until: number, everyMs: number, sent: Sent, failures: Failure[]): Promise<void> {
  const paths = ["/admin/tenants", "/admin/nodes", "/health?deep=1"];
  for (let i = 0; Date.now() < until; i++) {
    const path = paths[i % paths.length] ?? "/health?deep=1";
    await record(`GET ${path}`, async () => {
      const res = await fetch(`${stack.gatewayUrl}${path}`, { headers: { authorization: `Bearer ${stack.adminToken}` }, signal: AbortSignal.timeout(30_000) });
      const body = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status} ${body.slice(0, 200)}`);
    }, sent, failures);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function record(what: string, call: () => Promise<unknown>, sent: Sent, failures: Failure[]): Promise<void> {
  sent[what] = (sent[what] ?? 0) + 1;
  try {
    await call();
  } catch (err) {
    failures.push({ at: new Date().toISOString(), what, error: String(err).slice(0, 300) });
  }
}

/** Resident memory (MB) of each process and its descendants (wrangler's workerd is a grandchild); Linux /proc only, else empty. */
export function treeRssMb(roots: Record<string, number | undefined>): Record<string, number> {
  let stats: { pid: number; ppid: number; rssKb: number }[];
  try {
    stats = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
      try {
        const status = readFileSync(`/proc/${d}/status`, "utf8");
        const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
        const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
        return [{ pid: Number(d), ppid, rssKb }];
      } catch {
        return []; // gone since the listing
      }
    });
  } catch {
    return {};
  }
  const result: Record<string, number> = {};
  for (const [name, root] of Object.entries(roots)) {
    if (root === undefined) continue;
    const tree = new Set([root]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const s of stats) {
        if (tree.has(s.ppid) && !tree.has(s.pid)) {
          tree.add(s.pid);
          grew = true;
        }
      }
    }
    result[name] = Math.round(stats.filter((s) => tree.has(s.pid)).reduce((kb, s) => kb + s.rssKb, 0) / 1024);
  }
  return result;
}
