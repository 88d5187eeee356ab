import { pickWord } from "./textgen.ts";

/**
 * JSON the simulated model writes when a grammar guides it (response_format json_schema or
 * json_object, tool arguments): text that satisfies the schema, with values drawn from the
 * choice's PRNG, written the way Python's json.dumps(ensure_ascii=False) writes it (", " and
 * ": " separators, non-ASCII as is) so that vLLM re-serialising parsed arguments gives the
 * same text back. Rules (docs/simulator.md):
 * - object: every listed property, in schema order (required ones not listed are strings);
 * - string: a vocabulary word, honouring minLength/maxLength and the formats date, date-time,
 *   time, email, uri/url and uuid; integer and number: within minimum/maximum (default 0-100),
 *   a number has a ".5"; boolean: either; null: null;
 * - enum picks one value, const is the value; anyOf/oneOf take the first non-null option, allOf
 *   is merged; a type list takes its first non-null type; $ref to #/$defs or #/definitions;
 * - array: max(minItems, 1 or 2) items, at most maxItems;
 * - no type: an object if it lists properties, an array if it has items, else a string.
 */

type Schema = Record<string, unknown>;

const MAX_DEPTH = 8;

function isRecord(value: unknown): value is Schema {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A number as Python's json.dumps writes a JSON number read back (ints stay ints). */
function pyNumber(value: number): string {
  return String(value);
}

/** Python's json.dumps(value, ensure_ascii=False): ", " and ": " separators. */
export function pyJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return pyNumber(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(pyJson).join(", ")}]`;
  if (typeof value === "object") return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyJson(v)}`).join(", ")}}`;
  return "null";
}

interface Context {
  root: Schema;
  random: () => number;
}

function resolveRef(root: Schema, ref: string): unknown {
  const match = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
  if (!match) return {};
  const defs = root[match[1] ?? ""];
  const name = (match[2] ?? "").replaceAll("~1", "/").replaceAll("~0", "~");
  const target: unknown = isRecord(defs) ? defs[name] : undefined;
  return target ?? {};
}

function typeOf(schema: Schema): string {
  const type = schema.type;
  if (typeof type === "string") return type;
  if (Array.isArray(type)) {
    const types: unknown[] = type;
    const first = types.find((t) => t !== "null") ?? types[0];
    return typeof first === "string" ? first : "string";
  }
  if (isRecord(schema.properties)) return "object";
  if (schema.items !== undefined) return "array";
  return "string";
}

function bound(schema: Schema, key: "minimum" | "maximum", exclusive: "exclusiveMinimum" | "exclusiveMaximum"): number | null {
  const value = schema[key];
  if (typeof value === "number") return value;
  const excl = schema[exclusive];
  if (typeof excl === "number") return key === "minimum" ? excl + 1 : excl - 1;
  return null;
}

function integerIn(schema: Schema, random: () => number): number {
  const min = bound(schema, "minimum", "exclusiveMinimum");
  const max = bound(schema, "maximum", "exclusiveMaximum");
  const lo = Math.ceil(min ?? (max !== null ? Math.min(0, max - 100) : 0));
  const hi = Math.max(lo, Math.floor(max ?? lo + 100));
  return lo + (random() % (hi - lo + 1));
}

function numberIn(schema: Schema, random: () => number): number {
  const value = integerIn(schema, random);
  const max = bound(schema, "maximum", "exclusiveMaximum");
  return max === null || value + 0.5 <= max ? value + 0.5 : value;
}

const pad = (n: number) => String(n).padStart(2, "0");

function stringFor(schema: Schema, random: () => number): string {
  const draw = () => random();
  switch (schema.format) {
    case "date":
      return `${2020 + (draw() % 6)}-${pad(1 + (draw() % 12))}-${pad(1 + (draw() % 28))}`;
    case "date-time":
      return `${2020 + (draw() % 6)}-${pad(1 + (draw() % 12))}-${pad(1 + (draw() % 28))}T${pad(draw() % 24)}:${pad(draw() % 60)}:00Z`;
    case "time":
      return `${pad(draw() % 24)}:${pad(draw() % 60)}:00`;
    case "email":
      return `${pickWord(draw())}@example.com`;
    case "uri":
    case "url":
      return `https://example.com/${pickWord(draw())}`;
    case "uuid": {
      const hex = Array.from({ length: 4 }, () => draw().toString(16).padStart(8, "0")).join("");
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
    }
  }
  let text = pickWord(draw());
  const min = typeof schema.minLength === "number" ? schema.minLength : 0;
  while (text.length < min) text += ` ${pickWord(draw())}`;
  if (typeof schema.maxLength === "number") text = text.slice(0, Math.max(0, schema.maxLength));
  return text;
}

function generate(schema: unknown, ctx: Context, depth: number): string {
  const { random } = ctx;
  if (!isRecord(schema)) return JSON.stringify(pickWord(random()));
  if (typeof schema.$ref === "string") return depth >= MAX_DEPTH ? "null" : generate(resolveRef(ctx.root, schema.$ref), ctx, depth + 1);
  if ("const" in schema) return pyJson(schema.const);
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return pyJson(schema.enum[random() % schema.enum.length]);
  const options = Array.isArray(schema.anyOf) ? schema.anyOf : Array.isArray(schema.oneOf) ? schema.oneOf : null;
  if (options && options.length > 0) {
    const option: unknown = options.find((o) => !(isRecord(o) && o.type === "null")) ?? options[0];
    return generate(option, ctx, depth + 1);
  }
  if (Array.isArray(schema.allOf)) {
    const { allOf, ...rest } = schema;
    const merged: Schema = { ...rest };
    for (const part of allOf) {
      if (!isRecord(part)) continue;
      const properties = isRecord(part.properties) ? { ...(isRecord(merged.properties) ? merged.properties : {}), ...part.properties } : merged.properties;
      Object.assign(merged, part, properties === undefined ? {} : { properties });
    }
    return generate(merged, ctx, depth + 1);
  }
  switch (typeOf(schema)) {
    case "object": {
      if (depth >= MAX_DEPTH) return "{}";
      const properties = isRecord(schema.properties) ? schema.properties : {};
      const required = Array.isArray(schema.required) ? schema.required.filter((r): r is string => typeof r === "string") : [];
      const keys = [...Object.keys(properties), ...required.filter((r) => !(r in properties))];
      return `{${keys.map((k) => `${JSON.stringify(k)}: ${generate(properties[k] ?? { type: "string" }, ctx, depth + 1)}`).join(", ")}}`;
    }
    case "array": {
      if (depth >= MAX_DEPTH) return "[]";
      const min = typeof schema.minItems === "number" ? schema.minItems : 0;
      const max = typeof schema.maxItems === "number" ? schema.maxItems : Infinity;
      const count = Math.max(min, Math.min(1 + (random() % 2), max));
      return `[${Array.from({ length: count }, () => generate(schema.items ?? {}, ctx, depth + 1)).join(", ")}]`;
    }
    case "integer":
      return pyNumber(integerIn(schema, random));
    case "number":
      return pyNumber(numberIn(schema, random));
    case "boolean":
      return random() % 2 === 0 ? "true" : "false";
    case "null":
      return "null";
    default:
      return JSON.stringify(stringFor(schema, random));
  }
}

/** JSON text satisfying `schema` (an object's parameters when absent: "{}"). */
export function jsonForSchema(schema: unknown, random: () => number): string {
  if (!isRecord(schema) || Object.keys(schema).length === 0) return "{}";
  return generate(schema, { root: schema, random }, 0);
}

/** What a model writes for response_format json_object: an object with a short sentence. */
export function jsonObjectText(random: () => number): string {
  const words = Array.from({ length: 3 + (random() % 3) }, () => pickWord(random()));
  const sentence = words.join(" ");
  return `{"answer": ${JSON.stringify(sentence.charAt(0).toUpperCase() + sentence.slice(1))}}`;
}
