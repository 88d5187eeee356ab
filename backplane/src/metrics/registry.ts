/**
 * A minimal Prometheus registry (counters, gauges, histograms with labels) rendering the text
 * exposition format. The backplane's own metrics are few and fixed, so a dependency is not worth it.
 */

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  return Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`)
    .join(",");
}

function sample(name: string, key: string, value: number): string {
  const v = Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN";
  return key ? `${name}{${key}} ${v}` : `${name} ${v}`;
}

/** Prometheus' text format 0.0.4, or OpenMetrics 1.0 (counter families without `_total`, histogram exemplars). */
export type ExpositionFormat = "prometheus" | "openmetrics";

interface Metric {
  render(format?: ExpositionFormat): string[];
}

/** The name a counter's family has in `format` (OpenMetrics names it without `_total`). */
function counterFamily(name: string, format: ExpositionFormat): string {
  return format === "openmetrics" ? name.replace(/_total$/, "") : name;
}

/** A monotonically increasing counter. */
export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  render(format: ExpositionFormat = "prometheus"): string[] {
    const family = counterFamily(this.name, format);
    return [`# HELP ${family} ${this.help}`, `# TYPE ${family} counter`, ...[...this.values].map(([k, v]) => sample(this.name, k, v))];
  }
}

/** A gauge whose values are read when the registry renders. */
export class Gauge implements Metric {
  readonly name: string;
  readonly help: string;
  private readonly read: () => { labels: Labels; value: number }[];
  /** `counter` for a value read from elsewhere that only rises (an engine's lifetime counter). */
  private readonly type: "gauge" | "counter";
  constructor(name: string, help: string, read: () => { labels: Labels; value: number }[], type: "gauge" | "counter" = "gauge") {
    this.name = name;
    this.help = help;
    this.read = read;
    this.type = type;
  }
  render(format: ExpositionFormat = "prometheus"): string[] {
    const family = this.type === "counter" ? counterFamily(this.name, format) : this.name;
    return [`# HELP ${family} ${this.help}`, `# TYPE ${family} ${this.type}`, ...this.read().map((s) => sample(this.name, labelKey(s.labels), s.value))];
  }
}

/** A histogram with fixed upper bounds (seconds). */
export class Histogram implements Metric {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number; exemplars: (string | undefined)[] }>();
  readonly name: string;
  readonly help: string;
  private readonly bounds: readonly number[];
  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.bounds = bounds;
  }
  /** Counts `value`; with the trace id of an exported trace, it becomes its bucket's exemplar (OpenMetrics). */
  observe(labels: Labels, value: number, traceId?: string): void {
    const key = labelKey(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { counts: this.bounds.map(() => 0), sum: 0, count: 0, exemplars: [] };
      this.series.set(key, s);
    }
    let first = this.bounds.length;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value > (this.bounds[i] ?? Infinity)) continue;
      if (i < first) first = i;
      s.counts[i] = (s.counts[i] ?? 0) + 1;
    }
    if (traceId) s.exemplars[first] = `{trace_id="${traceId}"} ${value} ${(Date.now() / 1000).toFixed(3)}`;
    s.sum += value;
    s.count++;
  }
  render(format: ExpositionFormat = "prometheus"): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    const exemplar = (s: { exemplars: (string | undefined)[] }, i: number) => (format === "openmetrics" && s.exemplars[i] ? ` # ${s.exemplars[i]}` : "");
    for (const [key, s] of this.series) {
      const sep = key ? "," : "";
      this.bounds.forEach((b, i) => lines.push(`${this.name}_bucket{${key}${sep}le="${b}"} ${s.counts[i] ?? 0}${exemplar(s, i)}`));
      lines.push(`${this.name}_bucket{${key}${sep}le="+Inf"} ${s.count}${exemplar(s, this.bounds.length)}`);
      lines.push(sample(`${this.name}_sum`, key, s.sum), sample(`${this.name}_count`, key, s.count));
    }
    return lines;
  }
}

/** A set of metrics rendered together. */
export class Registry {
  private readonly metrics: Metric[] = [];
  add<M extends Metric>(metric: M): M {
    this.metrics.push(metric);
    return metric;
  }
  render(format: ExpositionFormat = "prometheus"): string {
    return `${this.metrics.flatMap((m) => m.render(format)).join("\n")}\n${format === "openmetrics" ? "# EOF\n" : ""}`;
  }
}

/** Latency buckets (seconds) from 5 ms to 2 min. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;
