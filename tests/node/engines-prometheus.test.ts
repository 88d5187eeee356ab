import { afterEach, describe, expect, it } from "vitest";
import { maxMetric, parsePrometheus, parsePromValue, selectSamples, sumMetric } from "../../backplane/src/engines/prometheus.ts";
import { type SimEngine, startSimEngine } from "../../backplane/src/sim/index.ts";

// The sample exposition of wire-formats.md §1, verbatim.
const SAMPLE = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama-8b"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama-8b"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="llama-8b"} 0.42
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="llama-8b"} 10240.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="llama-8b"} 98765.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="llama-8b"} 57.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="llama-8b"} 60.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="llama-8b"} 4.8
vllm:time_to_first_token_seconds_count{engine="0",model_name="llama-8b"} 60.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="llama-8b"} 58.0
`;

describe("Prometheus text parser", () => {
  it("reads every sample of the documented vLLM exposition with labels, values and family types", () => {
    const samples = parsePrometheus(SAMPLE);
    expect(samples).toHaveLength(10);
    expect(samples[0]).toEqual({ name: "vllm:num_requests_running", labels: { engine: "0", model_name: "llama-8b" }, value: 3, type: "gauge" });
    expect(sumMetric(samples, "vllm:kv_cache_usage_perc")).toBe(0.42);
    expect(selectSamples(samples, "vllm:prefix_cache_hits_total")[0]?.type).toBe("counter");
    expect(sumMetric(samples, "vllm:generation_tokens_total")).toBe(98765);
    const buckets = selectSamples(samples, "vllm:time_to_first_token_seconds_bucket");
    expect(buckets.map((b) => [b.labels.le, b.value, b.type])).toEqual([["0.1", 57, "histogram"], ["+Inf", 60, "histogram"]]);
    expect(sumMetric(samples, "vllm:time_to_first_token_seconds_sum")).toBe(4.8);
    expect(sumMetric(samples, "vllm:time_to_first_token_seconds_count")).toBe(60);
    // No TYPE line for request_success: the sample is kept, untyped.
    expect(selectSamples(samples, "vllm:request_success_total", { finished_reason: "stop" })).toEqual([
      { name: "vllm:request_success_total", labels: { engine: "0", finished_reason: "stop", model_name: "llama-8b" }, value: 58, type: null },
    ]);
  });

  it("unescapes quotes, backslashes and newlines in label values, and reads special values and timestamps", () => {
    const text = [
      'm{path="C:\\\\dir",quote="say \\"hi\\", ok",nl="a\\nb",brace="}{"} +Inf',
      "m_nan NaN 1700000000000",
      "m_neg -Inf",
      "m_exp{} 1.5e3",
      'm_sp { a = "x" , } 2',
    ].join("\n");
    const samples = parsePrometheus(text);
    expect(samples[0]?.labels).toEqual({ path: "C:\\dir", quote: 'say "hi", ok', nl: "a\nb", brace: "}{" });
    expect(samples[0]?.value).toBe(Infinity);
    expect(Number.isNaN(samples[1]?.value)).toBe(true);
    expect(samples[2]?.value).toBe(-Infinity);
    expect(samples[3]).toMatchObject({ name: "m_exp", labels: {}, value: 1500 });
    expect(samples[4]).toMatchObject({ labels: { a: "x" }, value: 2 });
  });

  it("skips malformed lines and keeps the rest of the scrape", () => {
    const text = ['good{a="1"} 1', 'bad{a="1" 2', "bad_value abc", 'unterminated{a="x} 3', "too many 1 2 3", "# just a comment", "good{a=\"2\"} 2"].join("\n");
    const samples = parsePrometheus(text);
    expect(samples.map((s) => [s.name, s.value])).toEqual([["good", 1], ["good", 2]]);
  });

  it("sums and maxes over series filtered by label, and answers null for a metric that is absent", () => {
    const text = [
      'vllm:num_requests_running{engine="0",model_name="a"} 2',
      'vllm:num_requests_running{engine="1",model_name="a"} 3',
      'vllm:num_requests_running{engine="0",model_name="b"} 7',
      'vllm:kv_cache_usage_perc{engine="0",model_name="a"} 0.2',
      'vllm:kv_cache_usage_perc{engine="1",model_name="a"} NaN',
      'vllm:kv_cache_usage_perc{engine="2",model_name="a"} 0.6',
    ].join("\n");
    const samples = parsePrometheus(text);
    expect(sumMetric(samples, "vllm:num_requests_running")).toBe(12);
    expect(sumMetric(samples, "vllm:num_requests_running", { model_name: "a" })).toBe(5);
    expect(sumMetric(samples, "vllm:num_requests_running", { model_name: ["a", "b"], engine: "0" })).toBe(9);
    expect(maxMetric(samples, "vllm:kv_cache_usage_perc", { model_name: "a" })).toBe(0.6);
    expect(sumMetric(samples, "vllm:num_requests_running", { model_name: "zzz" })).toBeNull();
    expect(sumMetric(samples, "vllm:gpu_cache_usage_perc")).toBeNull();
    expect(parsePromValue("1e-3")).toBe(0.001);
    expect(parsePromValue("twelve")).toBeNull();
  });
});

describe("Prometheus text parser on the simulator's /metrics", () => {
  let sim: SimEngine | null = null;
  afterEach(async () => {
    await sim?.close();
    sim = null;
  });

  it("parses the real page: one series per model for every vLLM metric, histogram buckets ending at +Inf", async () => {
    sim = await startSimEngine({ port: 0, ttftMs: 0, interTokenMs: 0 });
    const res = await fetch(`${sim.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "sim-llama-8b", messages: [{ role: "user", content: "Hello" }], max_tokens: 5 }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const samples = parsePrometheus(await (await fetch(`${sim.url}/metrics`)).text());
    for (const name of ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"]) {
      expect(selectSamples(samples, name).map((s) => s.labels.model_name).sort()).toEqual(["sim-embed", "sim-llama-8b"]);
    }
    const llama = { model_name: "sim-llama-8b" };
    expect(sumMetric(samples, "vllm:prompt_tokens_total", llama)).toBe(9);
    expect(sumMetric(samples, "vllm:generation_tokens_total", llama)).toBe(5);
    expect(sumMetric(samples, "vllm:time_to_first_token_seconds_count", llama)).toBe(1);
    expect(selectSamples(samples, "vllm:prompt_tokens_total")[0]?.type).toBe("counter");
    const buckets = selectSamples(samples, "vllm:time_to_first_token_seconds_bucket", llama);
    expect(buckets.at(-1)?.labels.le).toBe("+Inf");
    expect(buckets.at(-1)?.value).toBe(1);
    expect(buckets[0]?.type).toBe("histogram");
    expect(sumMetric(samples, "vllm:request_success_total", { ...llama, finished_reason: "length" })).toBe(1);
  });
});
