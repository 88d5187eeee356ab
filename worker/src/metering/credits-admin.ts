/**
 * `/admin/credits`: credit grants (free tier, promotions, adjustments) that pay for a tenant's usage
 * before anything is billable. The usage flush draws from them (metering/credits.ts), so they never
 * touch the request path and need no cache invalidation. Granting and voiding are the operator's; a
 * tenant admin key can see its own tenant's grants.
 */
import { and, desc, eq, gt, isNull, lt, or, type SQL } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { creditGrants, tenants } from "../../../schema/tables/index.ts";
import { ApiError } from "../errors.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { canSee, inTransaction, notFound, readJson, readQuery, reading, requireOperator } from "../admin/http.ts";
import { decodeCursor, page, pageQuery } from "../admin/pagination.ts";
import { newId, recordAudit } from "../admin/store.ts";
import { creditGrantJson } from "../admin/wire.ts";

const MAX_MICROS = 1_000_000_000_000_000; // a billion dollars: anything larger is a typo

const grantBody = z
  .strictObject({
    tenant_id: z.string().min(1).max(200),
    kind: z.enum(["free_tier", "promotion", "adjustment"]),
    amount_micros: z.number().int().min(1).max(MAX_MICROS).optional(),
    amount_usd: z.number().positive().max(MAX_MICROS / 1_000_000).optional(),
    expires_at: z.iso.datetime({ offset: true }).nullable().default(null),
    note: z.string().max(500).default(""),
  })
  .refine((b) => (b.amount_micros === undefined) !== (b.amount_usd === undefined), { message: "give exactly one of amount_micros and amount_usd", path: ["amount_micros"] });

const listQuery = z.object({
  ...pageQuery,
  tenant_id: z.string().min(1).max(200).optional(),
  /** Only grants that can still pay for usage (remaining > 0 and not expired). */
  active: z.enum(["true", "false"]).optional(),
});

/** The credit routes, mounted at `/admin/credits`. */
export const creditRoutes = new Hono<AdminEnv>()
  .post("/", async (c) => {
    requireOperator(c.get("actor"), "grant credits");
    const body = await readJson(c, grantBody);
    const amount = body.amount_micros ?? Math.round((body.amount_usd ?? 0) * 1_000_000);
    const expiresAt = body.expires_at === null ? null : new Date(body.expires_at);
    if (expiresAt !== null && expiresAt.getTime() <= Date.now()) {
      throw new ApiError("invalid_value", "expires_at is in the past; a grant must be usable for some time.", { param: "expires_at" });
    }
    const row = await inTransaction(c, async (db) => {
      const [tenant] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, body.tenant_id));
      if (!tenant) throw notFound("tenant", body.tenant_id);
      const [row] = await db
        .insert(creditGrants)
        .values({ id: newId("cred"), tenantId: body.tenant_id, kind: body.kind, amountMicros: amount, remainingMicros: amount, expiresAt, note: body.note })
        .returning();
      if (!row) throw new Error("credit grant insert returned no row");
      await recordAudit(db, actorName(c.get("actor")), "credit.grant", "credit_grant", row.id, row.tenantId, { after: creditGrantJson(row) });
      return row;
    });
    return c.json(creditGrantJson(row), 201);
  })
  .get("/", async (c) => {
    const query = readQuery(c, listQuery);
    const actor = c.get("actor");
    if (actor.kind === "tenant" && query.tenant_id !== undefined && query.tenant_id !== actor.tenantId) throw notFound("tenant", query.tenant_id);
    const tenantId = actor.kind === "tenant" ? actor.tenantId : query.tenant_id;
    const after = decodeCursor(query.cursor, ["created", "id"]);
    const now = new Date();
    const where: (SQL | undefined)[] = [
      tenantId === undefined ? undefined : eq(creditGrants.tenantId, tenantId),
      query.active === "true" ? and(gt(creditGrants.remainingMicros, 0), or(isNull(creditGrants.expiresAt), gt(creditGrants.expiresAt, now))) : undefined,
      after ? or(lt(creditGrants.createdAt, new Date(after.created)), and(eq(creditGrants.createdAt, new Date(after.created)), lt(creditGrants.id, after.id))) : undefined,
    ];
    const rows = await reading(c, (db) =>
      db
        .select()
        .from(creditGrants)
        .where(and(...where))
        .orderBy(desc(creditGrants.createdAt), desc(creditGrants.id))
        .limit(query.limit + 1),
    );
    return c.json(page(rows, query.limit, creditGrantJson, (r) => ({ created: r.createdAt.toISOString(), id: r.id })));
  })
  .get("/:id", async (c) => {
    const id = c.req.param("id");
    const [row] = await reading(c, (db) => db.select().from(creditGrants).where(eq(creditGrants.id, id)));
    if (!row || !canSee(c.get("actor"), row.tenantId)) throw notFound("credit grant", id);
    return c.json(creditGrantJson(row));
  })
  .post("/:id/void", async (c) => {
    // Voiding keeps the row (what was used stays on record) and stops it paying for anything more.
    requireOperator(c.get("actor"), "void credits");
    const id = c.req.param("id");
    const after = await inTransaction(c, async (db) => {
      const [before] = await db.select().from(creditGrants).where(eq(creditGrants.id, id)).for("update");
      if (!before) throw notFound("credit grant", id);
      const [after] = await db.update(creditGrants).set({ remainingMicros: 0 }).where(eq(creditGrants.id, id)).returning();
      if (!after) throw notFound("credit grant", id);
      await recordAudit(db, actorName(c.get("actor")), "credit.void", "credit_grant", id, after.tenantId, { before: creditGrantJson(before), after: creditGrantJson(after) });
      return after;
    });
    return c.json(creditGrantJson(after));
  });
