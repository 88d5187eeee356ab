/**
 * A small parser for the Prometheus text exposition format 0.0.4 (what vLLM's prometheus_client
 * serves on /metrics). It keeps samples only; HELP text is dropped and TYPE is attached to each
 * sample of the family. Malformed lines are skipped rather than failing the whole scrape, because
 * one odd line from a newer engine must not blind the load signals.
 */

/** One sample line: `name{label="value",…} value [timestamp]`. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
  /** The family's `# TYPE` (counter, gauge, histogram, summary, untyped), when declared. */
  type: string | null;
}

/** A label filter: a label must equal the string, or be one of the listed values. */
export type LabelMatch = Record<string, string | readonly string[]>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
// prometheus_client appends these to the family name (counters: _total/_created; histograms/summaries: the rest).
const SUFFIXES = ["_total", "_created", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info"];

/** Parses a value token: floats, `+Inf`, `-Inf`, `NaN` (case-insensitive, per the format). */
export function parsePromValue(token: string): number | null {
  const lower = token.toLowerCase();
  if (lower === "+inf" || lower === "inf") return Infinity;
  if (lower === "-inf") return -Infinity;
  if (lower === "nan") return NaN;
  if (token === "" || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(token)) return null;
  return Number(token);
}

/** Parses `{a="x",b="y\"z"}` starting at `text[0] === "{"`; returns the labels and the rest, or null. */
function parseLabels(text: string): { labels: Record<string, string>; rest: string } | null {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    while (text[i] === " " || text[i] === ",") i++;
    if (text[i] === "}") return { labels, rest: text.slice(i + 1) };
    const name = LABEL_NAME.exec(text.slice(i))?.[0];
    if (name === undefined) return null;
    i += name.length;
    while (text[i] === " ") i++;
    if (text[i] !== "=") return null;
    i++;
    while (text[i] === " ") i++;
    if (text[i] !== '"') return null;
    i++;
    let value = "";
    for (;;) {
      const ch = text[i];
      if (ch === undefined) return null;
      if (ch === '"') break;
      if (ch === "\\") {
        const next = text[i + 1];
        // The format escapes exactly three characters in label values: \\, \" and \n.
        value += next === "n" ? "\n" : next === '"' ? '"' : next === "\\" ? "\\" : `\\${next ?? ""}`;
        i += 2;
        continue;
      }
      value += ch;
      i++;
    }
    labels[name] = value;
    i++;
  }
}

function parseSampleLine(line: string, types: Map<string, string>): PromSample | null {
  const name = NAME.exec(line)?.[0];
  if (name === undefined) return null;
  let rest = line.slice(name.length).trimStart();
  let labels: Record<string, string> = {};
  if (rest.startsWith("{")) {
    const parsed = parseLabels(rest);
    if (parsed === null) return null;
    labels = parsed.labels;
    rest = parsed.rest;
  }
  const [valueToken, timestamp, extra] = rest.trim().split(/\s+/);
  if (valueToken === undefined || extra !== undefined) return null;
  if (timestamp !== undefined && !/^-?\d+$/.test(timestamp)) return null;
  const value = parsePromValue(valueToken);
  if (value === null) return null;
  return { name, labels, value, type: familyType(name, types) };
}

function familyType(name: string, types: Map<string, string>): string | null {
  const direct = types.get(name);
  if (direct !== undefined) return direct;
  for (const suffix of SUFFIXES) {
    if (name.endsWith(suffix)) {
      const type = types.get(name.slice(0, -suffix.length));
      if (type !== undefined) return type;
    }
  }
  return null;
}

/** Parses an exposition into its samples, in order. */
export function parsePrometheus(text: string): PromSample[] {
  const types = new Map<string, string>();
  const samples: PromSample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    if (line.startsWith("#")) {
      const match = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line);
      if (match?.[1] !== undefined && match[2] !== undefined) types.set(match[1], match[2]);
      continue;
    }
    const sample = parseSampleLine(line, types);
    if (sample !== null) samples.push(sample);
  }
  return samples;
}

function matches(labels: Record<string, string>, match: LabelMatch | undefined): boolean {
  if (match === undefined) return true;
  for (const [key, want] of Object.entries(match)) {
    const have = labels[key];
    if (have === undefined) return false;
    if (typeof want === "string" ? have !== want : !want.includes(have)) return false;
  }
  return true;
}

/** Samples of one metric name whose labels match. */
export function selectSamples(samples: readonly PromSample[], name: string, match?: LabelMatch): PromSample[] {
  return samples.filter((s) => s.name === name && matches(s.labels, match));
}

/** Sum of a metric over the matching series; null when no series matches (the engine does not expose it). */
export function sumMetric(samples: readonly PromSample[], name: string, match?: LabelMatch): number | null {
  const selected = selectSamples(samples, name, match);
  return selected.length === 0 ? null : selected.reduce((total, s) => total + s.value, 0);
}

/** Largest value of a metric over the matching series (NaN ignored); null when none matches. */
export function maxMetric(samples: readonly PromSample[], name: string, match?: LabelMatch): number | null {
  const values = selectSamples(samples, name, match)
    .map((s) => s.value)
    .filter((v) => !Number.isNaN(v));
  return values.length === 0 ? null : Math.max(...values);
}
