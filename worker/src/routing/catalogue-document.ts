/**
 * `GET|PUT /admin/models/configured` (operator only): the whole model catalogue as one YAML document,
 * to keep in version control and apply as a whole. PUT is a dry run answering the plan unless
 * `?apply=true`; applying runs the same plan in one transaction with one audit row
 * (`catalogue.apply`). Each entry is checked and written like PUT /admin/models/:id (`upsertModel`):
 * a field left out keeps its value, null clears it. Models left out of the document are deactivated,
 * never deleted (usage keeps their names), like DELETE /admin/models/:id.
 *
 * The dry run is the apply rolled back: the adapter checks read the rows the document writes (a base
 * created by the same document), so only running the writes validates exactly what applying would.
 */
import { asc, inArray } from "drizzle-orm";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { isScalar, LineCounter, parseDocument, visit } from "yaml";
import { z } from "zod";
import { models } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { inTransaction, reading, readQuery, requireOperator } from "../admin/http.ts";
import { cacheKeysOf, dropCaches } from "../admin/invalidate.ts";
import { recordAudit, type AdminDb } from "../admin/store.ts";
import { CATALOGUE_FIELDS, catalogueYaml, type CatalogueField, type CataloguePlan } from "./catalogue-wire.ts";
import { checkCatalogueNames } from "./catalogue-names.ts";
import { MODEL_ID, modelFields, modelJson, upsertModel, type ModelChange, type ModelRow } from "./models-admin.ts";

/** Largest document accepted (a catalogue of thousands of models is a few hundred KB). */
const MAX_BYTES = 1_000_000;
const MAX_MODELS = 10_000;
/** Aliases expanded at most (the yaml package's guard against "billion laughs" documents). */
const MAX_ALIASES = 100;
/**
 * The yaml package parses nesting recursively and slowly (a megabyte of `[` takes seconds before it
 * gives up), so nesting is bounded before parsing: flow brackets, and the indentation and `- ` / `? `
 * indicators that open a line. Counted without regard to quoting, so an estimate from above.
 */
const MAX_FLOW_DEPTH = 64;
const MAX_LINE_INDENT = 256;

const FIELDS: readonly (keyof ModelChange)[] = CATALOGUE_FIELDS;
/** The document lists every field PUT /admin/models/:id takes (a type error here otherwise). */
type EveryFieldListed = [Exclude<keyof ModelChange, CatalogueField>] extends [never] ? true : never;
true satisfies EveryFieldListed;
const entrySchema = z.strictObject({ id: z.string().regex(MODEL_ID, "not a valid model id"), ...modelFields.shape });
const documentSchema = z.strictObject({ models: z.array(entrySchema).max(MAX_MODELS) });
type Entry = z.infer<typeof entrySchema>;

function notYaml(message: string): ApiError {
  return new ApiError("invalid_value", `The request body is not a valid catalogue document: ${message}`);
}

/** Refuses nesting the parser would spend seconds on (see MAX_FLOW_DEPTH), before parsing. */
function checkNesting(text: string): void {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x5b || ch === 0x7b) {
      if (++depth > MAX_FLOW_DEPTH) throw notYaml(`flow collections nested deeper than ${MAX_FLOW_DEPTH}.`);
    } else if ((ch === 0x5d || ch === 0x7d) && depth > 0) depth--;
  }
  const indent = new RegExp(`^[ \\t?:-]{${MAX_LINE_INDENT + 1}}`, "m").exec(text);
  if (indent) throw notYaml(`a line indented or nested deeper than ${MAX_LINE_INDENT} columns.`);
}

/** Parses the YAML (one document, core schema, no unknown tags or duplicate keys) into plain data. */
function parseYaml(text: string): unknown {
  checkNesting(text);
  const lines = new LineCounter();
  try {
    // uniqueKeys is checked below: the package compares every pair of keys, quadratic in a large map.
    const doc = parseDocument(text, { schema: "core", merge: false, uniqueKeys: false, logLevel: "error", prettyErrors: false, lineCounter: lines });
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem) {
      const at = lines.linePos(problem.pos[0]);
      throw notYaml(`${problem.message} (line ${at.line}, column ${at.col}).`);
    }
    visit(doc, {
      Map(_, map) {
        const seen = new Set<string>();
        for (const pair of map.items) {
          const key = isScalar(pair.key) ? pair.key : null;
          const at = key?.range ? lines.linePos(key.range[0]) : null;
          const where = at ? ` (line ${at.line}, column ${at.col})` : "";
          if (key === null || (typeof key.value !== "string" && typeof key.value !== "number")) throw notYaml(`map keys must be plain names${where}.`);
          const name = String(key.value);
          if (seen.has(name)) throw notYaml(`duplicate key '${name}'${where}.`);
          seen.add(name);
        }
      },
    });
    return doc.toJS({ maxAliasCount: MAX_ALIASES }) as unknown;
  } catch (err) {
    // The parser's own failure modes (alias bombs: ReferenceError; deep nesting: RangeError) are the
    // document's fault, so a 400 like any other bad document.
    if (err instanceof ApiError) throw err;
    throw notYaml(err instanceof Error ? err.message : String(err));
  }
}

/** `models[3].context_length` for the zod path ["models", 3, "context_length"]. */
function paramOf(path: readonly PropertyKey[]): string {
  return path.reduce<string>((s, p) => (typeof p === "number" ? `${s}[${p}]` : s === "" ? String(p) : `${s}.${String(p)}`), "");
}

function entryId(json: unknown, index: unknown): string | null {
  if (typeof index !== "number" || typeof json !== "object" || json === null) return null;
  const list: unknown = (json as { models?: unknown }).models;
  const entry: unknown = Array.isArray(list) ? list[index] : undefined;
  const id: unknown = typeof entry === "object" && entry !== null ? (entry as { id?: unknown }).id : undefined;
  return typeof id === "string" ? id : null;
}

/** Validates the document: every entry like a PUT /admin/models/:id body plus its id, ids unique. */
export function parseCatalogue(text: string): Entry[] {
  const json = parseYaml(text);
  const result = documentSchema.safeParse(json ?? {});
  if (!result.success) {
    const issue = result.error.issues[0];
    const path = issue === undefined ? [] : issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0] ?? ""] : issue.path;
    const param = paramOf(path) || null;
    const id = entryId(json, path[1]);
    const of = id === null ? "" : ` (model '${id}')`;
    const message = issue?.code === "unrecognized_keys" ? `Unknown field ${param}${of}.` : `Invalid ${param ?? "document"}${of}: ${issue?.message ?? "invalid value"}.`;
    throw new ApiError("invalid_value", message, { param });
  }
  const first = new Map<string, number>();
  result.data.models.forEach((entry, index) => {
    const earlier = first.get(entry.id);
    if (earlier !== undefined) throw new ApiError("invalid_value", `Invalid models[${index}].id: '${entry.id}' is already models[${earlier}].`, { param: `models[${index}].id` });
    first.set(entry.id, index);
  });
  return result.data.models;
}

/** The fields an entry gives that differ from the row, as the JSON API shows them. */
function changesOf(before: ModelRow, entry: Entry): Record<string, { from: unknown; to: unknown }> {
  const now = modelJson(before);
  const changes: Record<string, { from: unknown; to: unknown }> = {};
  for (const field of FIELDS) {
    const to = entry[field];
    // Lists (aliases) compare by value.
    if (to !== undefined && JSON.stringify(to) !== JSON.stringify(now[field])) changes[field] = { from: now[field], to };
  }
  return changes;
}

/** An entry's error, renamed to the entry (`models[3].base_model`). */
function atEntry(err: unknown, index: number, id: string): unknown {
  if (!(err instanceof ApiError)) return err;
  return new ApiError(err.code, `models[${index}] (model '${id}'): ${err.message}`, { param: `models[${index}]${err.param === null ? "" : `.${err.param}`}` });
}

/** Writes the document's catalogue in `db` (a transaction) and returns what it did. */
async function writeCatalogue(db: AdminDb, entries: Entry[]): Promise<CataloguePlan> {
  const rows = await db.select().from(models).orderBy(asc(models.id));
  const current = new Map(rows.map((row) => [row.id, row]));
  const plan: CataloguePlan = { object: "catalogue.plan", dry_run: true, create: [], update: [], deactivate: [], unchanged: [] };
  const indexed = entries.map((entry, index) => ({ entry, index, before: current.get(entry.id) }));
  // Bases before adapters, whatever the document's order: checkAdapter reads the base's row.
  const isAdapter = (e: (typeof indexed)[number]) => (e.entry.base_model === undefined ? (e.before?.baseModel ?? null) : e.entry.base_model) !== null;
  for (const { entry, index, before } of [...indexed.filter((e) => !isAdapter(e)), ...indexed.filter(isAdapter)]) {
    const { id, ...fields } = entry;
    const changes = before ? changesOf(before, entry) : null;
    if (changes !== null && Object.keys(changes).length === 0) {
      plan.unchanged.push(id);
      continue;
    }
    // An existing model gets only what changed, so checkAdapter sees the change PUT /:id would.
    const body = changes === null ? fields : modelFields.parse(Object.fromEntries(Object.keys(changes).map((f) => [f, changes[f]?.to])));
    try {
      await upsertModel(db, id, body, before);
    } catch (err) {
      throw atEntry(err, index, id);
    }
    if (changes === null) plan.create.push(id);
    else plan.update.push({ id, changes });
  }
  const listed = new Set(entries.map((e) => e.id));
  const left = rows.filter((row) => !listed.has(row.id));
  plan.deactivate = left.filter((row) => row.active).map((row) => row.id);
  plan.unchanged.push(...left.filter((row) => !row.active).map((row) => row.id));
  if (plan.deactivate.length > 0) await db.update(models).set({ active: false }).where(inArray(models.id, plan.deactivate));
  // Names are checked on the catalogue as the whole document leaves it (an alias may move between models).
  const written = new Set([...plan.create, ...plan.update.map((u) => u.id)]);
  const clash = await checkCatalogueNames(db, entries.filter((e) => written.has(e.id)).map((e) => e.id));
  if (clash) {
    const index = entries.findIndex((e) => e.id === clash.id);
    throw atEntry(clash.error, index, clash.id);
  }
  plan.create.sort();
  plan.update.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  plan.unchanged.sort();
  return plan;
}

/** The body as text (read as bytes: workerd warns when .text() reads a type it does not know as text). */
function utf8(bytes: ArrayBuffer): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw notYaml("the body is not UTF-8 text.");
  }
}

/** Carries a dry run's plan out of the transaction it rolls back. */
class DryRun extends Error {
  override name = "DryRun";
  readonly plan: CataloguePlan;

  constructor(plan: CataloguePlan) {
    super("catalogue dry run (rolled back)");
    this.plan = plan;
  }
}

const applyQuery = z.strictObject({ apply: z.enum(["true", "false"]).optional() });

/** The catalogue document routes, mounted at /admin/models/configured (before /admin/models/:id). */
export const catalogueDocumentRoutes = new Hono<AdminEnv>()
  .use(async (c, next) => {
    requireOperator(c.get("actor"), "manage the model catalogue");
    await next();
  })
  .get("/", async (c) => {
    const rows = await reading(c, (db) => db.select().from(models).orderBy(asc(models.id)));
    return c.body(catalogueYaml(rows.map(modelJson)), 200, { "content-type": "application/yaml; charset=utf-8" });
  })
  .put(
    "/",
    bodyLimit({
      maxSize: MAX_BYTES,
      onError: () => {
        throw new ApiError("request_too_large", `Catalogue documents are limited to ${MAX_BYTES} bytes.`);
      },
    }),
    async (c) => {
      const apply = readQuery(c, applyQuery).apply === "true";
      const entries = parseCatalogue(utf8(await c.req.arrayBuffer()));
      const prefix = c.get("deps").settings.redisPrefix;
      let result: { plan: CataloguePlan; keys: string[] };
      try {
        result = await inTransaction(c, async (db) => {
          const plan = await writeCatalogue(db, entries);
          if (!apply) throw new DryRun(plan);
          plan.dry_run = false;
          await recordAudit(db, actorName(c.get("actor")), "catalogue.apply", "catalogue", "models", null, { ...plan });
          return { plan, keys: await cacheKeysOf(db, prefix, { routing: true }) };
        });
      } catch (err) {
        if (err instanceof DryRun) return c.json(err.plan);
        throw err;
      }
      await dropCaches(c, result.keys);
      return c.json(result.plan);
    },
  );
