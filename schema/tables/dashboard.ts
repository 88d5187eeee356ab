import { sql } from "drizzle-orm";
import { index, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

/** Roles a dashboard user holds in a tenant: admins change things, viewers only look. */
export const DASHBOARD_ROLES = ["admin", "viewer"] as const;

/**
 * A signed-in dashboard session (worker/src/dashboard/). The browser holds a random token in an
 * HttpOnly cookie; only its SHA-256 is stored. Ends at `expiresAt` (absolute), after idling past the
 * configured time since `lastSeenAt`, or when revoked (sign-out, an invitation withdrawn, a key revoked).
 */
export const dashboardSessions = pgTable(
  "dashboard_sessions",
  {
    /** Public id (`dss_…`), shown in the audit log; never the token. */
    id: text("id").primaryKey(),
    tokenHash: text("token_hash").notNull().unique(),
    /** `operator` (the admin token) or `tenant` (an admin key or an SSO user of one tenant). */
    kind: text("kind", { enum: ["operator", "tenant"] }).notNull(),
    tenantId: text("tenant_id"),
    /** How the user signed in. */
    method: text("method", { enum: ["token", "key", "sso"] }).notNull(),
    role: text("role", { enum: DASHBOARD_ROLES }).notNull(),
    /** Who, as the audit log names them: `admin-token`, `key:<id>` or `user:<email>`. */
    principal: text("principal").notNull(),
    /** For key sign-ins, the key's hash: the session ends when the key stops working. */
    keyHash: text("key_hash"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    lastSeenAt: timestamp("last_seen_at", { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [index("dashboard_sessions_principal_idx").on(t.tenantId, t.principal), index("dashboard_sessions_expires_idx").on(t.expiresAt)],
);

/**
 * A tenant's OpenID Connect single sign-on: its issuer and client, and who may sign in (verified
 * email domains, with the role they get, besides invited addresses). The client secret is stored
 * encrypted with DASHBOARD_SECRET (AES-GCM); null for a public client (PKCE only).
 */
export const ssoConfigs = pgTable("sso_configs", {
  tenantId: text("tenant_id").primaryKey(),
  issuer: text("issuer").notNull(),
  clientId: text("client_id").notNull(),
  clientSecretEnc: text("client_secret_enc"),
  allowedDomains: text("allowed_domains").array().notNull().default(sql`'{}'::text[]`),
  domainRole: text("domain_role", { enum: DASHBOARD_ROLES }).notNull().default("viewer"),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/** An address invited to a tenant's dashboard with a role; it signs in through the tenant's SSO. */
export const ssoInvitations = pgTable(
  "sso_invitations",
  {
    tenantId: text("tenant_id").notNull(),
    /** Lower-cased. */
    email: text("email").notNull(),
    role: text("role", { enum: DASHBOARD_ROLES }).notNull(),
    invitedBy: text("invited_by").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    /** First sign-in with it. */
    acceptedAt: timestamp("accepted_at", { withTimezone: true }),
    lastSignInAt: timestamp("last_sign_in_at", { withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.email] })],
);
