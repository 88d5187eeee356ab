import { doublePrecision, index, integer, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";
import { tenants } from "./tenancy.ts";

/**
 * A memory trail (docs/memory.md): what a source learned about a target, warm while breadcrumbs keep
 * being left on it and cooling otherwise. `temperature` is as of `temperature_at`; readers apply the
 * decay since then, the scheduled job writes it back and removes trails gone cold.
 */
export const memoryTrails = pgTable(
  "memory_trails",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    source: text("source").notNull(),
    /** '' when the breadcrumbs named no target. */
    target: text("target").notNull().default(""),
    temperature: doublePrecision("temperature").notNull(),
    temperatureAt: timestamp("temperature_at", { withTimezone: true }).notNull(),
    breadcrumbs: integer("breadcrumbs").notNull().default(0),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("memory_trails_tenant_source_target_idx").on(t.tenantId, t.source, t.target), index("memory_trails_tenant_temperature_idx").on(t.tenantId, t.temperature)],
);

/** One breadcrumb left on a trail. */
export const memoryBreadcrumbs = pgTable(
  "memory_breadcrumbs",
  {
    id: text("id").primaryKey(),
    trailId: text("trail_id")
      .notNull()
      .references(() => memoryTrails.id, { onDelete: "cascade" }),
    tenantId: text("tenant_id").notNull(),
    content: text("content").notNull(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("memory_breadcrumbs_trail_at_idx").on(t.trailId, t.at)],
);
