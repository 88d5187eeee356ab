/**
 * The CPU an agent streaming profile costs per streamed request (docs/streaming-profiles.md), where
 * it is spent: the backplane's re-chunker (backplane/src/proxy/rechunk.ts) reading the engine's
 * stream with running usage and writing the profile's chunks, against the backplane's plain pipe
 * (which costs nothing per event in JavaScript), and the gateway's usage tap
 * (worker/src/proxy/sse-tap.ts) reading the re-chunked stream against the engine's own.
 *
 * In process on Node's V8 (the engine workerd embeds), timed with process.cpuUsage over batches of
 * streams, interleaved rounds, median per request. A 300-token vLLM-shaped chat answer with
 * continuous usage (what the backplane asks the engine for on a profiled stream), no pacing (the
 * interval only spreads the same work over time), a client that reads at once.
 */
import { Rechunker } from "../backplane/src/proxy/rechunk.ts";
import type { ProfileWire } from "../schema/contracts/stream-profile.ts";
import { tapSse } from "../worker/src/proxy/sse-tap.ts";
import { BUILTIN_PROFILES } from "../worker/src/profiles/profiles.ts";

const enc = new TextEncoder();
const TOKENS = 300;

/** One row: a profile (or the plain route), its events to the client, and CPU µs per streamed request. */
export interface ProfileCpuRow {
  profile: string;
  chunkTokens: number | null;
  eventsToClient: number;
  /** The backplane's re-chunker per request (null: the plain route pipes natively). */
  backplaneUs: number | null;
  /** The gateway's usage tap reading what the backplane sends. */
  gatewayTapUs: number;
}

export interface ProfilesBenchResult {
  tokens: number;
  streamsPerBatch: number;
  rounds: number;
  rows: ProfileCpuRow[];
}

/** The engine's stream, one event per read: with running usage on every chunk (a profiled stream's) or only at the end (the plain route's). */
function engineEvents(running: boolean): Uint8Array[] {
  const head = '{"id":"chatcmpl-8f1c2e4b9a7d4c0e","object":"chat.completion.chunk","created":1767225600,"model":"meta-llama/Llama-3.1-8B-Instruct",';
  const total = (n: number) => `"usage":{"prompt_tokens":412,"total_tokens":${412 + n},"completion_tokens":${n}}`;
  const usage = (n: number) => (running ? `,${total(n)}` : "");
  const out = [`data: ${head}"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${usage(0)}}\n\n`];
  const words = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dög", " —", " again", "."];
  for (let i = 1; i <= TOKENS; i++) {
    const finish = i === TOKENS ? '"finish_reason":"length","stop_reason":null' : '"finish_reason":null';
    out.push(`data: ${head}"choices":[{"index":0,"delta":{"content":"${words[i % words.length]}"},"logprobs":null,${finish}}]${usage(i)}}\n\n`);
  }
  out.push(`data: ${head}"choices":[],${total(TOKENS)}}\n\n`);
  out.push("data: [DONE]\n\n");
  return out.map((e) => enc.encode(e));
}

/** Runs one stream through a re-chunker; returns what it wrote, one string per write. */
function rechunk(profile: ProfileWire, events: Uint8Array[]): string[] {
  const writes: string[] = [];
  const r = new Rechunker(
    profile,
    { write: (t) => (writes.push(t), true), end: () => {}, onDrain: () => {} },
    { pause: () => {}, resume: () => {} },
    () => {},
  );
  for (const e of events) r.push(e);
  return writes;
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<void> {
  const reader = stream.getReader();
  while (!(await reader.read()).done);
}

/** The gateway's tap over `reads` (one per chunk), drained as a client would. */
async function tapOnce(reads: Uint8Array[]): Promise<void> {
  let i = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = reads[i++];
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
  const { body, done } = tapSse(source, { stripUsage: true });
  await drain(body);
  await done;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Measures every built-in profile and the plain route. */
export async function runProfilesBench(opts: { streams?: number; rounds?: number } = {}): Promise<ProfilesBenchResult> {
  const streams = opts.streams ?? 200;
  const rounds = opts.rounds ?? 5;
  const events = engineEvents(true);
  const plain = engineEvents(false);
  const wires: ProfileWire[] = BUILTIN_PROFILES.map((p) => ({ name: p.name, chunk_tokens: p.chunkTokens, interval_ms: 0, buffer_tokens: 100_000, timeout_ms: 60_000, prompt_tokens_estimate: 412 }));
  const outputs = new Map(wires.map((w) => [w.name, rechunk(w, events).map((t) => enc.encode(t))]));
  type Samples = { backplane: number[]; tap: number[] };
  const samples = new Map<string, Samples>(["plain", ...wires.map((w) => w.name)].map((name): [string, Samples] => [name, { backplane: [], tap: [] }]));
  // Warm-up, then interleaved rounds so drift hits every row alike.
  for (const w of wires) for (let i = 0; i < 50; i++) rechunk(w, events);
  for (let i = 0; i < 50; i++) await tapOnce(plain);
  for (let round = 0; round < rounds; round++) {
    let start = cpuUs();
    for (let i = 0; i < streams; i++) await tapOnce(plain);
    samples.get("plain")?.tap.push((cpuUs() - start) / streams);
    for (const w of wires) {
      const s = samples.get(w.name);
      start = cpuUs();
      for (let i = 0; i < streams; i++) rechunk(w, events);
      s?.backplane.push((cpuUs() - start) / streams);
      const out = outputs.get(w.name) ?? [];
      start = cpuUs();
      for (let i = 0; i < streams; i++) await tapOnce(out);
      s?.tap.push((cpuUs() - start) / streams);
    }
  }
  const rows: ProfileCpuRow[] = [
    { profile: "plain", chunkTokens: null, eventsToClient: plain.length - 1, backplaneUs: null, gatewayTapUs: Math.round(median(samples.get("plain")?.tap ?? [])) },
    ...wires.map((w) => ({
      profile: w.name,
      chunkTokens: w.chunk_tokens,
      eventsToClient: (outputs.get(w.name) ?? []).length - 1,
      backplaneUs: Math.round(median(samples.get(w.name)?.backplane ?? [])),
      gatewayTapUs: Math.round(median(samples.get(w.name)?.tap ?? [])),
    })),
  ];
  return { tokens: TOKENS, streamsPerBatch: streams, rounds, rows };
}

/** The markdown section of the report. */
export function formatProfiles(result: ProfilesBenchResult): string {
  const lines = [
    "## Agent streaming profiles: CPU per streamed request",
    "",
    `A ${result.tokens}-token chat stream with the engine's running usage, re-chunked in process on Node's V8 (median of ${result.rounds} rounds of ${result.streamsPerBatch} streams). ` +
      "The re-chunker runs on the backplane (the GPU host), so the edge pays only its usage tap, over fewer events when a profile coalesces; the `: tokens=N` comment each event carries keeps a cut stream metered exactly.",
    "",
    "| profile | tokens per chunk | events to the client | backplane re-chunker, µs | gateway tap, µs |",
    "|---|---:|---:|---:|---:|",
    ...result.rows.map((r) => `| ${r.profile} | ${r.chunkTokens ?? "engine's (1)"} | ${r.eventsToClient} | ${r.backplaneUs ?? "— (native pipe)"} | ${r.gatewayTapUs} |`),
  ];
  return lines.join("\n");
}

// `npx node bench/profiles.ts`: this section alone.
if (import.meta.main) {
  console.log(formatProfiles(await runProfilesBench()));
}
