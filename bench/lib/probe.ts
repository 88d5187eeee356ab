/**
 * The latency probe: one request at a time (concurrency 1), over node:http with a keep-alive agent
 * per target, timing the first and last byte of the body. Runs in its own worker thread
 * (probe-thread.ts), so the adapters living in the bench process never sit in its event loop.
 */
import { Agent, request } from "node:http";
import { importSigningKey, signRequest, type SigningKey } from "../../schema/contracts/signing.ts";

/** One target of the comparison: where to send, and how. */
export interface ProbeTarget {
  name: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  /**
   * Sign every request with this node secret (a backplane accepts each signature once): fresh
   * timestamp, nonce and signature, made before the request's clock starts.
   */
  signWith?: string;
}

/** One request's timings (ms) and outcome. */
export interface ProbeSample {
  target: string;
  status: number;
  firstByteMs: number;
  lastByteMs: number;
  /** The body, kept for the first round only (the correctness check). */
  body: string | null;
  error: string | null;
}

/** What to run: `rounds` rounds, each sending one request to every target in a shuffled order. */
export interface ProbeSpec {
  targets: ProbeTarget[];
  rounds: number;
  /** Rounds before measuring (connections, JIT, caches). */
  warmup: number;
  timeoutMs: number;
  /**
   * Pages fetched (GET, as text) right after the warm-up and after the last round, such as a
   * gateway's counters: what happened during the measured rounds alone is the difference.
   */
  checkpoints?: Checkpoint[];
}

/** A page read at the edges of the measured rounds. */
export interface Checkpoint {
  name: string;
  url: string;
  headers: Record<string, string>;
}

/** The checkpoints' texts by name (null: not readable) before and after the measured rounds. */
export interface CheckpointTexts {
  before: Record<string, string | null>;
  after: Record<string, string | null>;
}

/** What a probe run returns. */
export interface ProbeResult {
  samples: ProbeSample[];
  checkpoints: CheckpointTexts;
}

const agents = new Map<string, Agent>();

function agentFor(origin: string): Agent {
  let agent = agents.get(origin);
  if (!agent) {
    agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.set(origin, agent);
  }
  return agent;
}

const keys = new Map<string, Promise<SigningKey>>();

/** The target's headers, with a fresh signature when it asks for one. */
async function headersOf(target: ProbeTarget, url: URL): Promise<Record<string, string>> {
  if (target.signWith === undefined) return target.headers;
  let key = keys.get(target.signWith);
  if (!key) {
    key = importSigningKey(target.signWith);
    keys.set(target.signWith, key);
  }
  return { ...target.headers, ...(await signRequest(await key, "POST", `${url.pathname}${url.search}`, target.body)) };
}

/** Sends one request and times it. Never throws: failures are samples with `error`. */
export async function probeOnce(target: ProbeTarget, keepBody: boolean, timeoutMs: number): Promise<ProbeSample> {
  const url = new URL(target.url);
  const headers = await headersOf(target, url);
  return new Promise((resolve) => {
    const started = performance.now();
    let firstByteMs = -1;
    let status = 0;
    const chunks: Buffer[] = [];
    const done = (error: string | null) => {
      clearTimeout(timer);
      const lastByteMs = performance.now() - started;
      resolve({
        target: target.name,
        status,
        firstByteMs: firstByteMs < 0 ? lastByteMs : firstByteMs,
        lastByteMs,
        body: keepBody ? Buffer.concat(chunks).toString("utf8") : null,
        error,
      });
    };
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: "POST",
        agent: agentFor(url.origin),
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(target.body), ...headers },
      },
      (res) => {
        status = res.statusCode ?? 0;
        res.on("data", (chunk: Buffer) => {
          if (firstByteMs < 0) firstByteMs = performance.now() - started;
          if (keepBody || status !== 200) chunks.push(chunk);
        });
        res.on("end", () => done(status === 200 ? null : `HTTP ${status}: ${Buffer.concat(chunks).toString("utf8").slice(0, 300)}`));
        res.on("error", (err) => done(String(err)));
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on("error", (err) => done(String(err)));
    req.end(target.body);
  });
}

/** A copy of `items` in a random order (Fisher-Yates). */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

async function readCheckpoints(list: Checkpoint[], timeoutMs: number): Promise<Record<string, string | null>> {
  const texts = await Promise.all(
    list.map(async (c) => {
      try {
        const res = await fetch(c.url, { headers: c.headers, signal: AbortSignal.timeout(timeoutMs) });
        const text = await res.text();
        return res.ok ? text : null;
      } catch {
        return null;
      }
    }),
  );
  return Object.fromEntries(list.map((c, i) => [c.name, texts[i] ?? null]));
}

/** Runs the spec: warm-up rounds, then measured rounds, targets interleaved in a new order each round. */
export async function runProbe(spec: ProbeSpec): Promise<ProbeResult> {
  for (let r = 0; r < spec.warmup; r++) for (const t of spec.targets) await probeOnce(t, false, spec.timeoutMs);
  const before = await readCheckpoints(spec.checkpoints ?? [], spec.timeoutMs);
  const samples: ProbeSample[] = [];
  for (let r = 0; r < spec.rounds; r++) {
    for (const t of shuffled(spec.targets)) samples.push(await probeOnce(t, r === 0, spec.timeoutMs));
  }
  const after = await readCheckpoints(spec.checkpoints ?? [], spec.timeoutMs);
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
  return { samples, checkpoints: { before, after } };
}

/** Runs `spec` in a fresh worker thread and returns its samples and checkpoints. */
export async function probeInThread(spec: ProbeSpec): Promise<ProbeResult> {
  const { Worker } = await import("node:worker_threads");
  const worker = new Worker(new URL("./probe-thread.ts", import.meta.url), { workerData: spec });
  try {
    const reply = await new Promise<{ result?: ProbeResult; error?: string }>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`probe thread exited (code ${code})`)));
    });
    if (reply.error !== undefined || !reply.result) throw new Error(`probe thread failed: ${reply.error ?? "no samples"}`);
    return reply.result;
  } finally {
    await worker.terminate();
  }
}
