import { afterEach, describe, expect, it } from "vitest";
import { OtlpExporter, SPAN_KIND, Trace } from "../../schema/contracts/otlp-trace.ts";
import { formatTraceparent, newSpanId, newTraceId, parseOtlpHeaders, parseTraceparent, sampledByRatio } from "../../schema/contracts/trace-context.ts";
import { startOtlpReceiver, type OtlpReceiver } from "../support/otlp-receiver.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN = "00f067aa0ba902b7";

describe("traceparent (W3C Trace Context level 1)", () => {
  it("reads a valid version 00 header with its sampled flag", () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: true });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: false });
    // Unknown flags are ignored; only bit 0 is "sampled".
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-03`)?.sampled).toBe(true);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-02`)?.sampled).toBe(false);
  });

  it.each([
    ["empty", ""],
    ["uppercase hex", `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ["all-zero trace id", `00-${"0".repeat(32)}-${SPAN}-01`],
    ["all-zero parent id", `00-${TRACE}-${"0".repeat(16)}-01`],
    ["version ff", `ff-${TRACE}-${SPAN}-01`],
    ["non-hex version", `0x-${TRACE}-${SPAN}-01`],
    ["version 00 with extra fields", `00-${TRACE}-${SPAN}-01-extra`],
    ["a short trace id", `00-${TRACE.slice(1)}-${SPAN}-01`],
    ["wrong separators", `00_${TRACE}_${SPAN}_01`],
    ["non-hex flags", `00-${TRACE}-${SPAN}-0g`],
    ["two headers joined", `00-${TRACE}-${SPAN}-01, 00-${TRACE}-${SPAN}-01`],
    ["a later version with junk right after the flags", `01-${TRACE}-${SPAN}-01x`],
  ])("refuses %s", (_what, header) => {
    expect(parseTraceparent(header)).toBeNull();
  });

  it("reads the first four fields of a later version and ignores the rest", () => {
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: true });
    expect(parseTraceparent(`cc-${TRACE}-${SPAN}-00-what-the-future-holds`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: false });
  });

  it("formats version 00 and round-trips new ids", () => {
    const traceId = newTraceId();
    const spanId = newSpanId();
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(formatTraceparent(traceId, spanId, true)).toBe(`00-${traceId}-${spanId}-01`);
    expect(parseTraceparent(formatTraceparent(traceId, spanId, false))).toEqual({ traceId, spanId, sampled: false });
  });
});

describe("head sampling", () => {
  it("keeps about the ratio of random traces, and the same decision for the same trace", () => {
    const ids = Array.from({ length: 4000 }, () => newTraceId());
    const kept = ids.filter((id) => sampledByRatio(id, 0.25)).length;
    expect(kept / ids.length).toBeGreaterThan(0.2);
    expect(kept / ids.length).toBeLessThan(0.3);
    for (const id of ids.slice(0, 50)) expect(sampledByRatio(id, 0.25)).toBe(sampledByRatio(id, 0.25));
    expect(ids.every((id) => sampledByRatio(id, 1))).toBe(true);
    expect(ids.some((id) => sampledByRatio(id, 0))).toBe(false);
  });

  it("follows a sampled parent whatever the ratio, and keeps a failed trace", () => {
    const root = { rootName: "r", rootKind: SPAN_KIND.server };
    expect(new Trace({ ...root, parent: { traceId: TRACE, spanId: SPAN, sampled: true }, tracestate: null, ratio: 0 }).exported).toBe(true);
    const unsampled = new Trace({ ...root, parent: { traceId: TRACE, spanId: SPAN, sampled: false }, tracestate: "k=v", ratio: 0 });
    expect(unsampled.exported).toBe(false);
    expect(unsampled.traceparentFor(unsampled.root)).toBe(`00-${TRACE}-${unsampled.root.spanId}-00`);
    unsampled.start("attempt").fail("node answered 503").end();
    expect(unsampled.exported).toBe(true);
  });
});

describe("OTEL_EXPORTER_OTLP_HEADERS", () => {
  it("reads key=value pairs with percent-encoded values", () => {
    expect(parseOtlpHeaders("Authorization=Bearer%20abc, x-scope-orgid=tenant-1")).toEqual({ authorization: "Bearer abc", "x-scope-orgid": "tenant-1" });
    expect(parseOtlpHeaders("")).toEqual({});
  });

  it("refuses a malformed entry without repeating the secret", () => {
    expect(() => parseOtlpHeaders("authorization=ok,not-a-pair")).toThrow("entry 2");
    expect(() => parseOtlpHeaders("authorization=%zz-secret")).toThrow(/^entry 1 has a value/);
    try {
      parseOtlpHeaders("authorization=%zz-secret");
    } catch (err) {
      expect(String(err)).not.toContain("secret");
    }
  });
});

describe("OTLP/HTTP JSON export", () => {
  let receiver: OtlpReceiver | null = null;
  afterEach(async () => {
    await receiver?.close();
    receiver = null;
  });

  it("posts spans to {endpoint}/v1/traces as the OTLP JSON encoding, with the configured headers", async () => {
    receiver = await startOtlpReceiver();
    const failures: string[] = [];
    const exporter = new OtlpExporter({
      endpoint: `${receiver.url}/`,
      headers: { authorization: "Bearer t0ken" },
      timeoutMs: 2_000,
      source: { resource: { "service.name": "unit" }, scope: { name: "test" } },
      onFailure: (error) => failures.push(error),
    });
    const trace = new Trace({ parent: { traceId: TRACE, spanId: SPAN, sampled: true }, tracestate: "vendor=1", ratio: 0, rootName: "gateway request", rootKind: SPAN_KIND.server, startMs: 1_700_000_000_000.5 });
    const child = trace.start("upstream attempt", { kind: SPAN_KIND.client }).set("switchyard.node.id", "n1").set("switchyard.attempt", 1).set("ratio", 0.5).set("ok", true).set("skipped", undefined);
    child.fail("the node answered 503").end(1_700_000_000_010);
    trace.root.end(1_700_000_000_020);
    await exporter.export(trace, trace.finish());
    expect(failures).toEqual([]);
    expect(receiver.requests[0]?.headers.authorization).toBe("Bearer t0ken");
    const [root, attempt] = receiver.spans;
    expect(root).toMatchObject({ service: "unit", traceId: TRACE, parentSpanId: SPAN, traceState: "vendor=1", name: "gateway request", kind: 2, startTimeUnixNano: "1700000000000500000", endTimeUnixNano: "1700000000020000000", status: { code: 0 } });
    expect(attempt).toMatchObject({ traceId: TRACE, parentSpanId: root?.spanId, kind: 3, status: { code: 2, message: "the node answered 503" } });
    expect(attempt?.attributes).toEqual({ "switchyard.node.id": "n1", "switchyard.attempt": 1, ratio: 0.5, ok: true });
  });

  it("counts and reports a failed export without throwing", async () => {
    const failures: [string, number][] = [];
    // A port nothing listens on: the connection is refused.
    const exporter = new OtlpExporter({ endpoint: "http://127.0.0.1:1", headers: { authorization: "secret-value" }, timeoutMs: 500, source: { resource: {}, scope: { name: "t" } }, onFailure: (e, _spans, n) => failures.push([e, n]) });
    const trace = new Trace({ parent: null, tracestate: null, ratio: 1, rootName: "r", rootKind: SPAN_KIND.server });
    await exporter.export(trace, trace.finish());
    expect(exporter.failures).toBe(1);
    expect(failures[0]?.[1]).toBe(1);
    expect(failures[0]?.[0]).not.toContain("secret-value");
  });
});
