/**
 * `/admin/sso/:tenant_id`: a tenant's single sign-on for the dashboard (its OpenID Connect issuer and
 * client, the email domains admitted and their role) and its invitations. The operator manages any
 * tenant's, a tenant admin its own. The client secret is write-only: stored encrypted, never shown.
 * Withdrawing an invitation, changing its role or removing single sign-on ends the affected sessions.
 */
import { and, asc, eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { DASHBOARD_ROLES, dashboardSessions, ssoConfigs, ssoInvitations, tenants } from "../../../schema/tables/index.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { canSee, inTransaction, notFound, readJson, reading, type AdminContext } from "../admin/http.ts";
import { recordAudit } from "../admin/store.ts";
import { ApiError } from "../errors.ts";
import { endSessionsOf } from "./session.ts";
import { sealClientSecret } from "./sso-crypto.ts";

/** A tenant's single sign-on as the admin API shows it. */
export interface SsoConfigJson {
  object: "sso_config";
  tenant_id: string;
  issuer: string;
  client_id: string;
  has_client_secret: boolean;
  allowed_domains: string[];
  domain_role: "admin" | "viewer";
  updated_at: string;
}

/** An invitation. */
export interface SsoInvitationJson {
  object: "sso_invitation";
  tenant_id: string;
  email: string;
  role: "admin" | "viewer";
  invited_by: string;
  created_at: string;
  accepted_at: string | null;
  last_sign_in_at: string | null;
}

/** GET /admin/sso/:tenant_id. */
export interface SsoJson {
  object: "sso";
  tenant_id: string;
  /** Null until configured. */
  config: SsoConfigJson | null;
  invitations: SsoInvitationJson[];
  /** Register this with the identity provider as the client's redirect URI. */
  redirect_uri: string;
}

function configJson(row: typeof ssoConfigs.$inferSelect): SsoConfigJson {
  return {
    object: "sso_config",
    tenant_id: row.tenantId,
    issuer: row.issuer,
    client_id: row.clientId,
    has_client_secret: row.clientSecretEnc !== null,
    allowed_domains: row.allowedDomains,
    domain_role: row.domainRole,
    updated_at: row.updatedAt.toISOString(),
  };
}

function invitationJson(row: typeof ssoInvitations.$inferSelect): SsoInvitationJson {
  return {
    object: "sso_invitation",
    tenant_id: row.tenantId,
    email: row.email,
    role: row.role,
    invited_by: row.invitedBy,
    created_at: row.createdAt.toISOString(),
    accepted_at: row.acceptedAt?.toISOString() ?? null,
    last_sign_in_at: row.lastSignInAt?.toISOString() ?? null,
  };
}

/** True for an issuer this gateway may talk to: https, or http on a loopback host (local stacks and tests). */
export function acceptableIssuer(issuer: string): boolean {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return false;
  }
  if (url.search !== "" || url.hash !== "") return false;
  if (url.protocol === "https:") return true;
  return url.protocol === "http:" && (url.hostname === "127.0.0.1" || url.hostname === "localhost" || url.hostname === "[::1]");
}

const domain = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, "not a domain name");

const configBody = z
  .object({
    issuer: z.string().trim().max(500).refine(acceptableIssuer, "must be an https URL (http only on a loopback host), without query or fragment"),
    client_id: z.string().trim().min(1).max(500),
    /** Omitted: keep the stored one; null: a public client (PKCE only). */
    client_secret: z.string().min(1).max(2000).nullable().optional(),
    allowed_domains: z.array(domain).max(50).default([]),
    domain_role: z.enum(DASHBOARD_ROLES).default("viewer"),
  })
  .strict();

const inviteBody = z.object({ email: z.email().max(320).transform((e) => e.toLowerCase()), role: z.enum(DASHBOARD_ROLES) }).strict();

/** The redirect URI of this gateway's dashboard. */
export function redirectUriOf(requestUrl: string): string {
  return `${new URL(requestUrl).origin}/dashboard/login/sso/callback`;
}

async function visibleTenant(c: AdminContext): Promise<string> {
  const tenantId = c.req.param("tenant_id") ?? "";
  const exists = await reading(c, (db) => db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)));
  if (exists.length === 0 || !canSee(c.get("actor"), tenantId)) throw notFound("tenant", tenantId);
  return tenantId;
}

async function ssoOf(c: AdminContext, tenantId: string): Promise<SsoJson> {
  const [config, invitations] = await reading(c, (db) =>
    Promise.all([
      db.select().from(ssoConfigs).where(eq(ssoConfigs.tenantId, tenantId)),
      db.select().from(ssoInvitations).where(eq(ssoInvitations.tenantId, tenantId)).orderBy(asc(ssoInvitations.email)),
    ]),
  );
  return {
    object: "sso",
    tenant_id: tenantId,
    config: config[0] ? configJson(config[0]) : null,
    invitations: invitations.map(invitationJson),
    redirect_uri: redirectUriOf(c.req.url),
  };
}

/** The routes, mounted at `/admin/sso`. */
export const ssoAdminRoutes = new Hono<AdminEnv>()
  .get("/:tenant_id", async (c) => c.json(await ssoOf(c, await visibleTenant(c))))
  .put("/:tenant_id", async (c) => {
    const tenantId = await visibleTenant(c);
    const body = await readJson(c, configBody);
    const secret = c.get("deps").secrets.dashboard;
    const sealed = body.client_secret === undefined || body.client_secret === null ? null : await sealClientSecret(secret, tenantId, body.client_secret);
    await inTransaction(c, async (db) => {
      const before = (await db.select().from(ssoConfigs).where(eq(ssoConfigs.tenantId, tenantId)))[0];
      const values = {
        issuer: body.issuer.replace(/\/+$/, ""),
        clientId: body.client_id,
        // Omitted keeps the stored secret; null makes the client public.
        clientSecretEnc: body.client_secret === undefined ? (before?.clientSecretEnc ?? null) : sealed,
        allowedDomains: [...new Set(body.allowed_domains)],
        domainRole: body.domain_role,
        updatedAt: new Date(),
      };
      await db.insert(ssoConfigs).values({ tenantId, ...values }).onConflictDoUpdate({ target: ssoConfigs.tenantId, set: values });
      const after = (await db.select().from(ssoConfigs).where(eq(ssoConfigs.tenantId, tenantId)))[0];
      await recordAudit(db, actorName(c.get("actor")), before ? "sso.update" : "sso.create", "sso_config", tenantId, tenantId, {
        before: before ? configJson(before) : null,
        after: after ? configJson(after) : null,
      });
      // A narrower domain list or issuer change must not leave sessions it no longer admits.
      if (before && (before.issuer !== values.issuer || before.domainRole !== values.domainRole || before.allowedDomains.some((d) => !values.allowedDomains.includes(d)))) {
        await endDomainSessions(db, tenantId);
      }
    });
    return c.json(await ssoOf(c, tenantId));
  })
  .delete("/:tenant_id", async (c) => {
    const tenantId = await visibleTenant(c);
    await inTransaction(c, async (db) => {
      const before = await db.delete(ssoConfigs).where(eq(ssoConfigs.tenantId, tenantId)).returning();
      if (!before[0]) throw new ApiError("not_found", `Tenant ${tenantId} has no single sign-on configured.`);
      const ended = await db
        .update(dashboardSessions)
        .set({ revokedAt: new Date() })
        .where(and(eq(dashboardSessions.tenantId, tenantId), eq(dashboardSessions.method, "sso"), sql`${dashboardSessions.revokedAt} is null`))
        .returning({ id: dashboardSessions.id });
      await recordAudit(db, actorName(c.get("actor")), "sso.delete", "sso_config", tenantId, tenantId, { before: configJson(before[0]), sessions_ended: ended.length });
    });
    return c.json(await ssoOf(c, tenantId));
  })
  .post("/:tenant_id/invitations", async (c) => {
    const tenantId = await visibleTenant(c);
    const body = await readJson(c, inviteBody);
    const invitation = await inTransaction(c, async (db) => {
      const before = (await db.select().from(ssoInvitations).where(and(eq(ssoInvitations.tenantId, tenantId), eq(ssoInvitations.email, body.email))))[0];
      const [row] = await db
        .insert(ssoInvitations)
        .values({ tenantId, email: body.email, role: body.role, invitedBy: actorName(c.get("actor")) })
        .onConflictDoUpdate({ target: [ssoInvitations.tenantId, ssoInvitations.email], set: { role: body.role } })
        .returning();
      if (!row) throw new Error("invitation upsert returned nothing");
      // A changed role takes effect at the next sign-in: end the sessions holding the old one.
      const ended = before && before.role !== body.role ? await endSessionsOf(db, tenantId, `user:${body.email}`) : 0;
      await recordAudit(db, actorName(c.get("actor")), before ? "sso.invitation_update" : "sso.invite", "sso_invitation", body.email, tenantId, {
        before: before ? invitationJson(before) : null,
        after: invitationJson(row),
        sessions_ended: ended,
      });
      return row;
    });
    return c.json(invitationJson(invitation), 201);
  })
  .delete("/:tenant_id/invitations/:email", async (c) => {
    const tenantId = await visibleTenant(c);
    const email = decodeURIComponent(c.req.param("email")).toLowerCase();
    await inTransaction(c, async (db) => {
      const [before] = await db.delete(ssoInvitations).where(and(eq(ssoInvitations.tenantId, tenantId), eq(ssoInvitations.email, email))).returning();
      if (!before) throw notFound("invitation", email);
      const ended = await endSessionsOf(db, tenantId, `user:${email}`);
      await recordAudit(db, actorName(c.get("actor")), "sso.uninvite", "sso_invitation", email, tenantId, { before: invitationJson(before), sessions_ended: ended });
    });
    return c.json({ object: "sso_invitation", tenant_id: tenantId, email, deleted: true });
  });

// Sessions admitted by domain (users without an invitation) end when the domain rules change.
async function endDomainSessions(db: Parameters<typeof endSessionsOf>[0], tenantId: string): Promise<void> {
  const invited = (await db.select({ email: ssoInvitations.email }).from(ssoInvitations).where(eq(ssoInvitations.tenantId, tenantId))).map((r) => `user:${r.email}`);
  const live = await db
    .select({ id: dashboardSessions.id, principal: dashboardSessions.principal })
    .from(dashboardSessions)
    .where(and(eq(dashboardSessions.tenantId, tenantId), eq(dashboardSessions.method, "sso"), sql`${dashboardSessions.revokedAt} is null`));
  for (const s of live) if (!invited.includes(s.principal)) await db.update(dashboardSessions).set({ revokedAt: new Date() }).where(eq(dashboardSessions.id, s.id));
}

/** Removes a tenant's single sign-on, invitations and dashboard sessions (the tenant is being deleted). */
export async function deleteTenantSso(db: Parameters<typeof endSessionsOf>[0], tenantId: string): Promise<void> {
  await db.delete(ssoConfigs).where(eq(ssoConfigs.tenantId, tenantId));
  await db.delete(ssoInvitations).where(eq(ssoInvitations.tenantId, tenantId));
  await db.delete(dashboardSessions).where(eq(dashboardSessions.tenantId, tenantId));
}
