/**
 * The backplane's /metrics in both formats (backplane/src/metrics/registry.ts): Prometheus text by
 * default, OpenMetrics when the scraper asks for it, whose histogram buckets carry the trace id of an
 * exported trace as their exemplar and whose counter families are named without `_total`.
 */
import { describe, expect, it } from "vitest";
import { Counter, Gauge, Histogram, Registry } from "../../backplane/src/metrics/registry.ts";

function registry() {
  const r = new Registry();
  const requests = r.add(new Counter("switchyard_backplane_requests_total", "Requests."));
  const latency = r.add(new Histogram("switchyard_backplane_request_duration_seconds", "Latency.", [0.1, 1]));
  r.add(new Gauge("switchyard_engine_prompt_tokens_total", "Engine tokens.", () => [{ labels: { engine: "e" }, value: 42 }], "counter"));
  requests.inc({ engine: "e", outcome: "ok" });
  latency.observe({ engine: "e" }, 0.05, "4bf92f3577b34da6a3ce929d0e0e4736");
  latency.observe({ engine: "e" }, 0.5);
  latency.observe({ engine: "e" }, 3, "00f067aa0ba902b700f067aa0ba902b7");
  return r;
}

describe("backplane metrics formats", () => {
  it("writes exemplars on the bucket each traced observation fell in, in OpenMetrics only", () => {
    const om = registry().render("openmetrics");
    expect(om).toContain('switchyard_backplane_request_duration_seconds_bucket{engine="e",le="0.1"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.05 ');
    expect(om).toMatch(/switchyard_backplane_request_duration_seconds_bucket\{engine="e",le="1"\} 2\n/);
    expect(om).toContain('switchyard_backplane_request_duration_seconds_bucket{engine="e",le="+Inf"} 3 # {trace_id="00f067aa0ba902b700f067aa0ba902b7"} 3 ');
    expect(om.endsWith("# EOF\n")).toBe(true);
    // Counter families without _total, their samples with it.
    expect(om).toContain("# TYPE switchyard_backplane_requests counter");
    expect(om).toContain("# TYPE switchyard_engine_prompt_tokens counter");
    expect(om).toContain('switchyard_backplane_requests_total{engine="e",outcome="ok"} 1');

    const plain = registry().render();
    expect(plain).not.toContain("trace_id");
    expect(plain).not.toContain("# EOF");
    expect(plain).toContain("# TYPE switchyard_backplane_requests_total counter");
  });
});
