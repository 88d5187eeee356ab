import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { engineReportSchema } from "../../schema/contracts/heartbeat.ts";
import { type EngineConfig, parseConfig } from "../../backplane/src/config.ts";
import { createAdapter, hasLoadMetrics } from "../../backplane/src/engines/adapters.ts";
import { EnginePool } from "../../backplane/src/engines/pool.ts";

// A loopback llama-server: the real one needs a GGUF model and minutes of build, so this one
// writes the bodies llama.cpp's tools/server writes, built the way its C++ builds them (key order
// of common_json, which keeps insertion order; the text of server_task_result_metrics::to_metrics()).

/** What a C++ `std::ostream << double` writes with default flags: printf's %g, 6 significant digits. */
function cppDouble(value: number): string {
  if (value === 0) return "0";
  const [mantissa = "", exp = "0"] = value.toExponential(5).split("e");
  const e = Number(exp);
  const trim = (s: string) => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
  if (e < -4 || e >= 6) return `${trim(mantissa)}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  return trim(value.toPrecision(6));
}

/** `server_metrics` (server-common.h) plus the two gauges the METRICS task counts. Times in µs. */
interface LlamaMetrics {
  prompt: { count: number; steps: number; time: number };
  predict: { count: number; steps: number; time: number };
  promptBucket: { steps: number; time: number };
  predictBucket: { steps: number; time: number };
  nPromptCached: number;
  nDecode: number;
  nTokensMax: number;
  nBusySlots: number;
  nProcessingSlots: number;
  nTasksDeferred: number;
  nAcceptedPerPos: number[];
}

const IDLE: LlamaMetrics = {
  prompt: { count: 0, steps: 0, time: 0 },
  predict: { count: 0, steps: 0, time: 0 },
  promptBucket: { steps: 0, time: 0 },
  predictBucket: { steps: 0, time: 0 },
  nPromptCached: 0,
  nDecode: 0,
  nTokensMax: 0,
  nBusySlots: 0,
  nProcessingSlots: 0,
  nTasksDeferred: 0,
  nAcceptedPerPos: [],
};

const perSecond = (b: { steps: number; time: number }) => (b.time > 0 ? (b.steps / b.time) * 1e6 : 0);

/** server_task_result_metrics::to_metrics() of tools/server/server-task.cpp, line for line. */
function metricsText(m: LlamaMetrics): string {
  const counters: [string, string, number][] = [
    ["prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens", m.prompt.count],
    ["prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", m.nPromptCached],
    ["prompt_seconds_total", "Total time spent processing prompts", m.prompt.time / 1e6],
    ["tokens_predicted_total", "Number of generation tokens processed", m.predict.count],
    ["tokens_predicted_seconds_total", "Total time spent generating tokens", m.predict.time / 1e6],
    ["n_decode_total", "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding", m.nDecode],
    ["n_tokens_max", "Largest observed sequence length (prompt + generation)", m.nTokensMax],
    ["spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated", 0],
    ["spec_decode_num_accepted_tokens_total", "Speculative: Total draft tokens accepted by the target model", m.nAcceptedPerPos.reduce((a, b) => a + b, 0)],
    ["spec_decode_num_drafts_total", "Speculative: Total speculative decoding verification steps", 0],
  ];
  const gauges: [string, string, number][] = [
    ["prompt_tokens_seconds", "Average prompt throughput in tokens/s", perSecond(m.promptBucket)],
    ["predicted_tokens_seconds", "Average generation throughput in tokens/s", perSecond(m.predictBucket)],
    ["requests_processing", "Number of requests processing", m.nProcessingSlots],
    ["requests_deferred", "Number of requests deferred", m.nTasksDeferred],
    ["n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call", m.nBusySlots / Math.max(m.nDecode, 1)],
  ];
  let text = "";
  for (const [type, items] of [["counter", counters], ["gauge", gauges]] as const) {
    for (const [name, help, value] of items) {
      text += `# HELP llamacpp:${name} ${help}\n# TYPE llamacpp:${name} ${type}\nllamacpp:${name} ${cppDouble(value)}\n`;
    }
  }
  if (m.nAcceptedPerPos.length > 0) {
    text += "# HELP llamacpp:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position\n";
    text += "# TYPE llamacpp:spec_decode_num_accepted_tokens_per_pos_total counter\n";
    // uint64_t, not double: written as a plain integer.
    m.nAcceptedPerPos.forEach((n, i) => (text += `llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="${i}"} ${n}\n`));
  }
  return text;
}

/**
 * task_params::to_json(only_metrics = true) of a streamed chat request (max_tokens 256), as this
 * llama-server build wrote it: floats are C++ floats widened to double, and whole ones keep `.0`.
 */
const SLOT_PARAMS =
  '{"seed":4294967295,"temperature":0.800000011920929,"dynatemp_range":0.0,"dynatemp_exponent":1.0,"top_k":40,"top_p":0.949999988079071,' +
  '"min_p":0.05000000074505806,"top_n_sigma":-1.0,"xtc_probability":0.0,"xtc_threshold":0.10000000149011612,"typical_p":1.0,"repeat_last_n":64,' +
  '"repeat_penalty":1.0,"presence_penalty":0.0,"frequency_penalty":0.0,"dry_multiplier":0.0,"dry_base":1.75,"dry_allowed_length":2,' +
  '"dry_penalty_last_n":64,"mirostat":0,"mirostat_tau":5.0,"mirostat_eta":0.10000000149011612,"adaptive_target":-1.0,' +
  '"adaptive_decay":0.8999999761581421,"max_tokens":256,"n_predict":256,"n_keep":0,"n_discard":0,"ignore_eos":false,"stream":true,"n_probs":0,' +
  '"min_keep":0,"chat_format":"peg-native","reasoning_format":"deepseek","reasoning_in_content":false,' +
  '"generation_prompt":"<|im_start|>assistant\\n","samplers":["penalties","dry","top_n_sigma","top_k","typ_p","top_p","min_p","xtc","temperature"],' +
  '"speculative.types":"none","timings_per_token":false,"post_sampling_probs":false,"backend_sampling":false,"lora":[]}';

interface Slot {
  processing: boolean;
  /** The slot's token list (prompt + generated); undefined for a slot that never ran a task. */
  tokens?: number;
  /** Prompt tokens reused from the cache, and tokens generated so far (busy slots). */
  cached?: number;
  decoded?: number;
}

/**
 * server_slot::to_json(only_metrics = true) of tools/server/server-context.cpp. A released slot
 * keeps its last task and tokens, but its stats and n_predict limit are reset.
 */
function slotsBody(slots: Slot[], nCtx: number): string {
  const entries = slots.map((s, id) => {
    const head = { id, n_ctx: nCtx, speculative: false, is_processing: s.processing };
    if (s.tokens === undefined) return JSON.stringify(head);
    const decoded = s.processing ? (s.decoded ?? 0) : 0;
    const cached = s.processing ? (s.cached ?? 0) : 0;
    const task = {
      ...head,
      id_task: 100 + id,
      n_prompt_tokens: s.tokens,
      n_prompt_tokens_processed: s.processing ? s.tokens - decoded - cached : 0,
      n_prompt_tokens_cache: cached,
      params: "PARAMS",
      next_token: [{ has_next_token: s.processing, has_new_line: false, n_remain: s.processing ? 256 - decoded : -1, n_decoded: decoded }],
    };
    return JSON.stringify(task).replace('"PARAMS"', SLOT_PARAMS);
  });
  return `[${entries.join(",")}]`;
}

/** get_res_models(): the Ollama-style `models` list, then the OpenAI `data` list. */
function modelsBody(name: string, aliases: string[]): string {
  return JSON.stringify({
    models: [{ name, model: name, modified_at: "", size: "", digest: "", type: "model", description: "", tags: [""], capabilities: ["completion"], parameters: "", details: { parent_model: "", format: "gguf", family: "", families: [""], parameter_size: "", quantization_level: "" } }],
    object: "list",
    data: [{ id: name, aliases, tags: [], object: "model", created: 1765098000, owned_by: "llamacpp", meta: { vocab_type: 2, n_vocab: 151936, n_ctx: 4096, n_ctx_train: 32768, n_embd: 896, n_params: 494032768, size: 491400032, ftype: "Q4_K - Medium" } }],
  });
}

const errorBody = (code: number, message: string, type: string) => JSON.stringify({ error: { code, message, type } });

interface FakeLlama {
  url: string;
  /** Flip to play the phases and flags of a real server; read by every request. */
  state: { loading: boolean; metrics: LlamaMetrics | null; slots: string | null; models: string; apiKey: string | null };
  paths: string[];
}

let servers: Server[] = [];
let pools: EnginePool[] = [];
afterEach(async () => {
  await Promise.all(pools.map((p) => p.close()));
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  servers = [];
  pools = [];
});

/** A loopback llama-server (server-http.cpp's middleware order: loading state, then api key, then the route). */
async function fakeLlama(state: Partial<FakeLlama["state"]> = {}): Promise<FakeLlama> {
  const fake: Omit<FakeLlama, "url"> = {
    state: { loading: false, metrics: { ...IDLE }, slots: slotsBody([{ processing: false }, { processing: false }], 4096), models: modelsBody("/srv/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", []), apiKey: null, ...state },
    paths: [],
  };
  const json = (res: ServerResponse, status: number, body: string) => res.writeHead(status, { "content-type": "application/json; charset=utf-8" }).end(body);
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    fake.paths.push(path);
    const s = fake.state;
    if (s.loading) return json(res, 503, JSON.stringify({ error: { message: "Loading model", type: "unavailable_error", code: 503 } }));
    if (s.apiKey !== null && path !== "/health" && req.headers.authorization !== `Bearer ${s.apiKey}`) {
      return json(res, 401, JSON.stringify({ error: { message: "Invalid API Key", type: "authentication_error", code: 401 } }));
    }
    if (path === "/health") return json(res, 200, '{"status":"ok"}');
    if (path === "/v1/models") return json(res, 200, s.models);
    if (path === "/metrics") {
      if (s.metrics === null) return json(res, 501, errorBody(501, "This server does not support metrics endpoint. Start it with `--metrics`", "not_supported_error"));
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4", "process-start-time-unix": "1214" }).end(metricsText(s.metrics));
      return;
    }
    if (path === "/slots") {
      if (s.slots === null) return json(res, 501, errorBody(501, "This server does not support slots endpoint. Start it with `--slots`", "not_supported_error"));
      return json(res, 200, s.slots);
    }
    json(res, 404, JSON.stringify({ error: { message: "File Not Found", type: "not_found_error", code: 404 } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
  return { ...fake, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function engine(url: string, partial: Partial<EngineConfig> = {}): EngineConfig {
  return { id: "llama-0", kind: "llamacpp", url, models: [], maxConcurrency: 4, maxQueue: 8, apiKey: null, ...partial };
}

const signal = () => AbortSignal.timeout(5000);

/** Metrics after some traffic: 1746 prompt tokens of which 512 came from the cache, 1536 generated. */
const SERVED: LlamaMetrics = {
  ...IDLE,
  prompt: { count: 1234, steps: 1234, time: 845_123 },
  predict: { count: 1536, steps: 1530, time: 30_611_200 },
  promptBucket: { steps: 300, time: 200_000 },
  predictBucket: { steps: 700, time: 14_000_000 },
  nPromptCached: 512,
  nDecode: 1544,
  nTokensMax: 1034,
  nBusySlots: 2301,
};

describe("llamacpp engine kind", () => {
  it("is accepted as an --engine spec and has load metrics", () => {
    const config = parseConfig({ nodeId: "n1", region: "eu-1", secret: "s".repeat(32), engines: "kind=llamacpp,url=http://127.0.0.1:8080,model=qwen2.5-0.5b" });
    expect(config.engines).toEqual([{ id: "llamacpp-0", kind: "llamacpp", url: "http://127.0.0.1:8080", models: ["qwen2.5-0.5b"], maxConcurrency: 64, maxQueue: 256, apiKey: null, priorityScheduling: false }]);
    expect(hasLoadMetrics(engine("http://127.0.0.1:8080"))).toBe(true);
  });
});

describe("llama-server adapter: health", () => {
  it("is healthy once /health answers ok, with the model's name and its --alias names", async () => {
    // --alias qwen2.5-0.5b,qwen-small: the names are a std::set, so the id is the first in sort order.
    const llama = await fakeLlama({ models: modelsBody("qwen-small", ["qwen-small", "qwen2.5-0.5b"]) });
    const result = await createAdapter(engine(llama.url)).probe(signal());
    expect(result).toMatchObject({ healthy: true, error: null, models: ["qwen-small", "qwen2.5-0.5b"] });
    expect(llama.paths).toEqual(["/health", "/v1/models"]);
  });

  it("is unhealthy with llama-server's 'Loading model' while the weights load, then healthy", async () => {
    const llama = await fakeLlama({ loading: true });
    const adapter = createAdapter(engine(llama.url));
    expect(await adapter.probe(signal())).toMatchObject({ healthy: false, models: null, error: "GET /health answered 503 (Loading model)" });
    expect(llama.paths).toEqual(["/health"]);
    llama.state.loading = false;
    expect(await adapter.probe(signal())).toMatchObject({ healthy: true, models: ["/srv/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"] });
  });

  it("sends the api key (/health is public; /v1/models and /metrics are not) and reports a wrong key", async () => {
    const llama = await fakeLlama({ apiKey: "sekret" });
    const good = createAdapter(engine(llama.url, { apiKey: "sekret" }));
    expect((await good.probe(signal())).healthy).toBe(true);
    expect((await good.scrapeLoad(signal())).running).toBe(0);
    const wrong = await createAdapter(engine(llama.url, { apiKey: "nope" })).probe(signal());
    expect(wrong).toMatchObject({ healthy: false, error: "GET /v1/models answered 401" });
  });
});

describe("llama-server adapter: load", () => {
  it("reads an idle server's /metrics without asking /slots (which would reset its idle-sleep timer)", async () => {
    const llama = await fakeLlama({ metrics: SERVED });
    const load = await createAdapter(engine(llama.url)).scrapeLoad(signal());
    expect(load).toEqual({ running: 0, waiting: 0, kvCacheUsage: 0, recentTtftMs: null, promptTokensTotal: 1746, generationTokensTotal: 1536 });
    expect(llama.paths).toEqual(["/metrics"]);
  });

  it("reports the counters as lifetime totals, cached prompt tokens included, across scrapes", async () => {
    const llama = await fakeLlama({ metrics: SERVED });
    const adapter = createAdapter(engine(llama.url));
    expect(await adapter.scrapeLoad(signal())).toMatchObject({ promptTokensTotal: 1746, generationTokensTotal: 1536 });
    // One more request: 40 prompt tokens, 32 of them from the cache, 20 generated. The throughput
    // gauges restart with each scrape (reset_bucket); the counters go on.
    llama.state.metrics = { ...SERVED, prompt: { count: 1242, steps: 1242, time: 851_000 }, nPromptCached: 544, predict: { count: 1556, steps: 1550, time: 31_000_000 }, promptBucket: { steps: 8, time: 5_877 }, predictBucket: { steps: 20, time: 388_800 } };
    expect(await adapter.scrapeLoad(signal())).toMatchObject({ promptTokensTotal: 1786, generationTokensTotal: 1556 });
  });

  it("reads counters above 999 999 as llama-server prints them, rounded to 6 significant digits", async () => {
    const big: LlamaMetrics = { ...SERVED, prompt: { count: 1_234_567, steps: 1_234_567, time: 912_345_678 }, nPromptCached: 20_480, predict: { count: 2_500_001, steps: 2_499_000, time: 9_000_000_000 } };
    expect(metricsText(big)).toContain("llamacpp:prompt_tokens_total 1.23457e+06\n");
    const llama = await fakeLlama({ metrics: big });
    const load = await createAdapter(engine(llama.url)).scrapeLoad(signal());
    expect(load).toMatchObject({ promptTokensTotal: 1_234_570 + 20_480, generationTokensTotal: 2_500_000 });
  });

  it("takes running and deferred from /metrics and KV use from the fullest busy slot in /slots", async () => {
    const llama = await fakeLlama({
      metrics: { ...SERVED, nProcessingSlots: 2, nTasksDeferred: 1, nAcceptedPerPos: [7, 3] },
      // The idle slot keeps 4000 cached tokens for reuse; they are not in use.
      slots: slotsBody([{ processing: true, tokens: 1024, decoded: 24 }, { processing: true, tokens: 3072, decoded: 72 }, { processing: false, tokens: 4000, decoded: 100 }], 4096),
    });
    const load = await createAdapter(engine(llama.url)).scrapeLoad(signal());
    expect(load).toEqual({ running: 2, waiting: 1, kvCacheUsage: 0.75, recentTtftMs: null, promptTokensTotal: 1746, generationTokensTotal: 1536 });
    expect(llama.paths).toEqual(["/metrics", "/slots"]);
  });

  it("keeps the /metrics load with KV use unknown when /slots is off (--no-slots)", async () => {
    const llama = await fakeLlama({ metrics: { ...SERVED, nProcessingSlots: 1 }, slots: null });
    const load = await createAdapter(engine(llama.url)).scrapeLoad(signal());
    expect(load).toEqual({ running: 1, waiting: 0, kvCacheUsage: null, recentTtftMs: null, promptTokensTotal: 1746, generationTokensTotal: 1536 });
  });

  it("falls back to /slots when /metrics answers 501 (started without --metrics): busy slots, no queue or counters", async () => {
    const llama = await fakeLlama({ metrics: null, slots: slotsBody([{ processing: true, tokens: 2048, decoded: 48 }, { processing: false, tokens: 900 }, { processing: false }], 8192) });
    const load = await createAdapter(engine(llama.url)).scrapeLoad(signal());
    expect(load).toEqual({ running: 1, waiting: null, kvCacheUsage: 0.25, recentTtftMs: null, promptTokensTotal: null, generationTokensTotal: null });
    expect(llama.paths).toEqual(["/metrics", "/slots"]);
  });

  it("falls back to /slots when /metrics is missing (404)", async () => {
    const slots = slotsBody([{ processing: false }, { processing: false }], 4096);
    const url = await plainServer({ "/slots": { status: 200, body: slots } });
    expect(await createAdapter(engine(url)).scrapeLoad(signal())).toEqual({ running: 0, waiting: null, kvCacheUsage: 0, recentTtftMs: null, promptTokensTotal: null, generationTokensTotal: null });
  });

  it("fails the scrape with a clear message when neither /metrics nor /slots is exposed", async () => {
    const llama = await fakeLlama({ metrics: null, slots: null });
    await expect(createAdapter(engine(llama.url)).scrapeLoad(signal())).rejects.toThrow("llama-server exposes no load: GET /metrics answered 501 and GET /slots 501 (start it with --metrics)");
  });

  it("fails the scrape on other /metrics errors", async () => {
    const url = await plainServer({ "/metrics": { status: 500, body: "" } });
    await expect(createAdapter(engine(url)).scrapeLoad(signal())).rejects.toThrow("GET /metrics answered 500");
  });

  it("feeds the pool a heartbeat report the gateway accepts", async () => {
    const llama = await fakeLlama({ metrics: { ...SERVED, nProcessingSlots: 1 }, slots: slotsBody([{ processing: true, tokens: 512 }], 4096) });
    const pool = new EnginePool({
      engines: [engine(llama.url)],
      settings: { healthIntervalMs: 60_000, loadIntervalMs: 60_000, breakerFailures: 3, breakerOpenMs: 60_000, probeTimeoutMs: 1000 },
      log: () => undefined,
    });
    pools.push(pool);
    await pool.start();
    const [report] = pool.reports();
    expect(engineReportSchema.parse(report)).toMatchObject({ kind: "llamacpp", healthy: true, models: ["/srv/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"], running: 1, waiting: 0, kvCacheUsage: 0.125, promptTokensTotal: 1746, generationTokensTotal: 1536 });
  });
});

/** A loopback server answering fixed bodies per path, 404 elsewhere. */
async function plainServer(routes: Record<string, { status: number; body: string }>): Promise<string> {
  const server = createServer((req, res) => {
    const route = routes[req.url ?? "/"];
    res.writeHead(route?.status ?? 404, { "content-type": "application/json; charset=utf-8" }).end(route?.body ?? "");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
