/**
 * `npx node bench/sse-tap.ts`: the CPU the SSE usage tap (worker/src/proxy/sse-tap.ts) costs per
 * streamed request, against the LF-only tap it replaced (bench/baselines/) and a pass-through
 * stream with no tap. With BENCH_EVENTSOURCE_PARSER=<path to eventsource-parser's dist/index.js> it
 * also measures a tap built on the `eventsource-parser` package (which decodes to strings, so it
 * cannot cut the usage chunk out by bytes: it is measured passing every byte on, its best case).
 *
 * Runs on Node's V8, the engine workerd embeds; Node's web streams are JS where workerd's are C++,
 * so the pass-through row is Node's and the "tap" columns (row minus pass-through) are what carries
 * over. Options: --streams N per batch (default 200), --rounds R interleaved rounds (default 7).
 */
import { parseArgs } from "node:util";
import { SseParser, type SseEvent } from "../schema/contracts/sse-parser.ts";
import { tapSse } from "../worker/src/proxy/sse-tap.ts";
import { parseUsage } from "../schema/contracts/usage-tap.ts";
import type { StreamOutcome } from "../worker/src/proxy/usage.ts";
import { tapSse as tapSseLfOnly } from "./baselines/sse-tap-lf-only.ts";

const { values } = parseArgs({ options: { streams: { type: "string", default: "200" }, rounds: { type: "string", default: "7" } } });
const STREAMS = Number(values.streams);
const ROUNDS = Number(values.rounds);

const enc = new TextEncoder();
type Tap = (source: ReadableStream<Uint8Array>, stripUsage: boolean) => { body: ReadableStream<Uint8Array>; done: Promise<unknown> };

/** A vLLM-shaped chat stream of 300 events: role, 296 tokens, finish, usage, [DONE]. */
function events(): string[] {
  const head = '{"id":"chatcmpl-8f1c2e4b9a7d4c0e","object":"chat.completion.chunk","created":1767225600,"model":"meta-llama/Llama-3.1-8B-Instruct",';
  const out = [`data: ${head}"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n`];
  const words = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dög", " —", " again", "."];
  for (let i = 0; i < 296; i++) out.push(`data: ${head}"choices":[{"index":0,"delta":{"content":"${words[i % words.length]}"},"logprobs":null,"finish_reason":null}]}\n\n`);
  out.push(`data: ${head}"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null}]}\n\n`);
  out.push(`data: ${head}"choices":[],"usage":{"prompt_tokens":412,"total_tokens":709,"completion_tokens":297,"prompt_tokens_details":{"cached_tokens":256}}}\n\n`);
  out.push("data: [DONE]\n\n");
  return out;
}

/** The stream as upstream reads: one event per read, or the bytes cut in TCP-segment-sized reads. */
function reads(eol: "\n" | "\r\n", split: "event" | "segment"): Uint8Array[] {
  const parts = events().map((event) => enc.encode(event.replaceAll("\n", eol)));
  if (split === "event") return parts;
  const all = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  const out: Uint8Array[] = [];
  for (let i = 0; i < all.length; i += 1460) out.push(all.slice(i, i + 1460));
  return out;
}

function sourceOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const part = parts[i++];
        if (part === undefined) controller.close();
        else controller.enqueue(part);
      },
    },
    { highWaterMark: 0 },
  );
}

/** No tap: the same pull-based stream construction forwarding every read. */
const passThrough: Tap = (source) => {
  const reader = source.getReader();
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const read = await reader.read();
        if (read.done) controller.close();
        else controller.enqueue(read.value);
      },
    },
    { highWaterMark: 0 },
  );
  return { body, done: Promise.resolve(null) };
};

interface EventsourceParserModule {
  createParser(callbacks: { onEvent(event: { data: string }): void }): { feed(text: string): void };
}

/** What every parser-only row does with an event: the tap's reading of it, without the stream. */
function onData(state: { usage: ReturnType<typeof parseUsage>; done: boolean; delivered: number }, data: string): void {
  if (data === "[DONE]") state.done = true;
  else if (!data.includes('"usage"')) state.delivered++;
  else state.usage = parseUsage((JSON.parse(data) as { usage?: unknown }).usage) ?? state.usage;
}

/** Parser only (no stream): this project's byte parser, or eventsource-parser on decoded text. */
function parseOnly(kind: "sse-parser" | "eventsource-parser", mod: EventsourceParserModule | null, parts: Uint8Array[]): number {
  const state = { usage: parseUsage(null), done: false, delivered: 0 };
  if (kind === "sse-parser") {
    const parser = new SseParser();
    const sink = { blockEnd: (_end: number, event: SseEvent | null) => (event ? onData(state, event.data) : undefined) };
    for (const part of parts) parser.push(part, sink);
  } else if (mod) {
    const decoder = new TextDecoder();
    const parser = mod.createParser({ onEvent: ({ data }) => onData(state, data) });
    for (const part of parts) parser.feed(decoder.decode(part, { stream: true }));
  }
  return state.delivered;
}

/** A tap on eventsource-parser: decodes every read and feeds it; forwards reads unchanged. */
function eventsourceParserTap(mod: EventsourceParserModule): Tap {
  return (source) => {
    const decoder = new TextDecoder();
    const state = { usage: parseUsage(null), sawDone: false, delivered: 0 };
    const parser = mod.createParser({
      onEvent({ data }) {
        if (data === "[DONE]") state.sawDone = true;
        else if (!data.includes('"usage"')) state.delivered++;
        else state.usage = parseUsage((JSON.parse(data) as { usage?: unknown }).usage) ?? state.usage;
      },
    });
    const reader = source.getReader();
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          const read = await reader.read();
          if (read.done) {
            controller.close();
            return;
          }
          parser.feed(decoder.decode(read.value, { stream: true }));
          controller.enqueue(read.value);
        },
      },
      { highWaterMark: 0 },
    );
    return { body, done: Promise.resolve(state) };
  };
}

async function drain(tap: Tap, parts: Uint8Array[], stripUsage: boolean): Promise<void> {
  const tapped = tap(sourceOf(parts), stripUsage);
  const reader = tapped.body.getReader();
  while (!(await reader.read()).done);
  await tapped.done;
}

/** CPU microseconds per stream over one batch. */
async function batch(tap: Tap, parts: Uint8Array[], stripUsage: boolean): Promise<number> {
  const start = process.cpuUsage();
  for (let i = 0; i < STREAMS; i++) await drain(tap, parts, stripUsage);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / STREAMS;
}

const taps: [string, Tap][] = [
  ["pass-through (no tap)", passThrough],
  ["LF-only tap (before)", (source, stripUsage) => tapSseLfOnly(source, { stripUsage })],
  ["SSE tap (now)", (source, stripUsage) => tapSse(source, { stripUsage })],
];
const espPath = process.env.BENCH_EVENTSOURCE_PARSER;
const esp = espPath ? ((await import(espPath)) as EventsourceParserModule) : null;
if (esp) taps.push(["eventsource-parser 3 tap (no stripping)", eventsourceParserTap(esp)]);

const workloads: { name: string; parts: Uint8Array[]; stripUsage: boolean }[] = [
  { name: "LF, one event per read, usage removed", parts: reads("\n", "event"), stripUsage: true },
  { name: "LF, one event per read, usage kept", parts: reads("\n", "event"), stripUsage: false },
  { name: "CRLF, one event per read, usage removed", parts: reads("\r\n", "event"), stripUsage: true },
  { name: "LF, 1460-byte reads, usage removed", parts: reads("\n", "segment"), stripUsage: true },
];

// Check what each tap makes of the first workload before timing it.
const check = tapSse(sourceOf(reads("\r\n", "event")), { stripUsage: true });
void check.body.pipeTo(new WritableStream());
const outcome: StreamOutcome = await check.done;
if (outcome.status !== "ok" || outcome.usage?.completionTokens !== 297 || outcome.deliveredChunks !== 298) {
  throw new Error(`the tap misread the benchmark stream: ${JSON.stringify(outcome)}`);
}

console.log(`SSE tap CPU per streamed request (${STREAMS} streams × ${ROUNDS} rounds, median; Node ${process.version})\n`);
console.log(`| workload | reads | ${taps.map(([name]) => name).join(" | ")} |`);
console.log(`|---|---:|${taps.map(() => "---:").join("|")}|`);
for (const workload of workloads) {
  for (const [, tap] of taps) await batch(tap, workload.parts, workload.stripUsage); // warm-up
  const samples: number[][] = taps.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, [, tap]] of taps.entries()) samples[i]?.push(await batch(tap, workload.parts, workload.stripUsage));
  }
  const medians = samples.map((s) => s.sort((a, b) => a - b)[Math.floor(s.length / 2)] ?? 0);
  const base = medians[0] ?? 0;
  const cells = medians.map((m, i) => (i === 0 ? `${m.toFixed(0)} µs` : `${m.toFixed(0)} µs (tap ${(m - base).toFixed(0)})`));
  console.log(`| ${workload.name} | ${workload.parts.length} | ${cells.join(" | ")} |`);
}

console.log(`\nParser only, no stream (same handling of each event; µs per 300-event stream, median of ${ROUNDS})\n`);
const parsers: ("sse-parser" | "eventsource-parser")[] = esp ? ["sse-parser", "eventsource-parser"] : ["sse-parser"];
console.log(`| workload | ${parsers.join(" | ")} |`);
console.log(`|---|${parsers.map(() => "---:").join("|")}|`);
for (const workload of workloads.filter((w) => !w.stripUsage || w.name.startsWith("CRLF") || w.name.includes("1460"))) {
  const medians = parsers.map((kind) => {
    const times: number[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      const start = process.cpuUsage();
      for (let i = 0; i < STREAMS * 5; i++) parseOnly(kind, esp, workload.parts);
      const used = process.cpuUsage(start);
      if (round > 0) times.push((used.user + used.system) / (STREAMS * 5)); // round 0 warms up
    }
    return times.sort((a, b) => a - b)[Math.floor(times.length / 2)] ?? 0;
  });
  console.log(`| ${workload.name.replace(", usage removed", "").replace(", usage kept", "")} | ${medians.map((m) => `${m.toFixed(0)} µs`).join(" | ")} |`);
}
