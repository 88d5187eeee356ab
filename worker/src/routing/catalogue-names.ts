/**
 * The names of the catalogue: every active model's id and aliases name one model only, so a request
 * naming either reaches exactly one (routing/aliases.ts). Checked after a change is written, in its
 * transaction, so a document that moves an alias from one model to another in one apply passes.
 *
 * Rules, for each model changed: an alias is not its own id; and while the model is active, none of
 * its aliases is another model's id (active or not: an id is its usage's name for good) or another
 * active model's alias, and its id is no other active model's alias. An inactive model keeps its
 * aliases without holding them: reactivating it is checked like any change.
 */
import { sql } from "drizzle-orm";
import { models } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import type { AdminDb } from "../admin/store.ts";

/** Serialises catalogue name checks across transactions (an arbitrary constant key of pg_advisory_xact_lock). */
const NAMES_LOCK = 0x5359_4e41;

/** A name clash of model `id` (the first found), to report on the entry that made it. */
export interface NameConflict {
  id: string;
  error: ApiError;
}

/** The first name clash `changed` models make in the catalogue `rows`, or null. */
export function nameConflict(rows: readonly { id: string; aliases: string[]; active: boolean }[], changed: readonly string[]): NameConflict | null {
  const ids = new Set(rows.map((r) => r.id));
  const activeHolder = (name: string, except: string) => rows.find((r) => r.active && r.id !== except && r.aliases.includes(name));
  const conflict = (id: string, code: "invalid_value" | "conflict", message: string): NameConflict => ({ id, error: new ApiError(code, message, { param: "aliases" }) });
  for (const id of changed) {
    const row = rows.find((r) => r.id === id);
    if (!row) continue;
    if (row.aliases.includes(id)) return conflict(id, "invalid_value", `Invalid aliases: '${id}' is the model's own id, which it answers to already.`);
    if (!row.active) continue;
    const owner = activeHolder(id, id);
    if (owner) return conflict(id, "conflict", `The model id '${id}' is already an alias of '${owner.id}'; remove it from that model's aliases first.`);
    for (const alias of row.aliases) {
      if (ids.has(alias)) return conflict(id, "conflict", `The alias '${alias}' of '${id}' is the id of the model '${alias}'; an alias may not name another model.`);
      const holder = activeHolder(alias, id);
      if (holder) return conflict(id, "conflict", `The alias '${alias}' of '${id}' is already an alias of '${holder.id}'; remove it there first (or in the same catalogue document).`);
    }
  }
  return null;
}

/** Reads the catalogue's names in `db` (a transaction that wrote `changed`) and answers the first clash, or null. */
export async function checkCatalogueNames(db: AdminDb, changed: readonly string[]): Promise<NameConflict | null> {
  if (changed.length === 0) return null;
  // Two transactions each adding the same alias to different models must not both pass.
  await db.execute(sql`select pg_advisory_xact_lock(${NAMES_LOCK})`);
  const rows = await db.select({ id: models.id, aliases: models.aliases, active: models.active }).from(models);
  return nameConflict(rows, changed);
}
