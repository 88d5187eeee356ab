/** The catalogue document's YAML and plan (catalogue-document.ts), shared with the admin CLI (worker/cli/catalogue.ts). */
import { stringify } from "yaml";

/** The fields of a document entry besides its id: those of PUT /admin/models/:id, in the order listed. */
export const CATALOGUE_FIELDS = [
  "family",
  "kind",
  "context_length",
  "input_price_per_m_tokens",
  "output_price_per_m_tokens",
  "cached_input_price_per_m_tokens",
  "audio_price_per_minute",
  "cache_hit_price_factor",
  "active",
  "routing_strategy",
  "base_model",
  "adapter_source",
  "aliases",
] as const;

/** A field of a document entry besides its id. */
export type CatalogueField = (typeof CATALOGUE_FIELDS)[number];

/** One model as the document lists it: the fields of the JSON API (GET /admin/models), extra ones ignored. */
export type CatalogueEntry = Record<"id" | CatalogueField, unknown>;

/** What applying a catalogue document does (or did); every list ordered by id. */
export interface CataloguePlan {
  object: "catalogue.plan";
  dry_run: boolean;
  create: string[];
  update: { id: string; changes: Record<string, { from: unknown; to: unknown }> }[];
  deactivate: string[];
  /** Models the document leaves as they are, including inactive models it leaves out. */
  unchanged: string[];
}

const HEADER = [
  "Switchyard model catalogue: every model, ordered by id (GET /admin/models/configured).",
  "Apply it with PUT /admin/models/configured (a dry run answering the plan; ?apply=true applies it)",
  "or `npm run admin -- model apply FILE [--apply]`. Models left out are deactivated, not deleted;",
  "a field left out of an entry keeps its current value, null clears it.",
];

/** The catalogue document: what GET /admin/models/configured answers and `model export` prints. */
export function catalogueYaml(entries: CatalogueEntry[]): string {
  const list = [...entries]
    .sort((a, b) => (String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0))
    .map((entry) => Object.fromEntries(["id" as const, ...CATALOGUE_FIELDS].map((field) => [field, entry[field]])));
  return `${HEADER.map((line) => `# ${line}`).join("\n")}\n${stringify({ models: list })}`;
}
