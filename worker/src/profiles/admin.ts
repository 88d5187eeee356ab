/**
 * `/admin/stream-profiles`: the agent streaming profiles (docs/streaming-profiles.md). Anyone with
 * admin access reads them; only operators change them. The built-ins (voice, copilot, gui) are
 * always there: a PUT of one stores an override, a DELETE of it goes back to the default. Other
 * names add profiles, served at /v1/agents/stream?type=<name>.
 *
 * Reaching the gateway: profiles travel in the routing snapshot, so a change drops its Redis entry
 * and this isolate's caches; other isolates follow within ROUTING_CACHE_ISOLATE_SECONDS.
 */
import { asc, eq } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { streamProfiles } from "../../../schema/tables/index.ts";
import { PROFILE_BOUNDS } from "../../../schema/contracts/stream-profile.ts";
import { ApiError } from "../errors.ts";
import { actorName, type AdminEnv } from "../admin/auth.ts";
import { inTransaction, readJson, reading, requireOperator } from "../admin/http.ts";
import { recordAudit } from "../admin/store.ts";
import { dropRoutingSnapshot } from "../nodes/admin-state.ts";
import { BUILTIN_PROFILES } from "./profiles.ts";
import type { StreamProfile } from "./types.ts";
import type { StreamProfileJson } from "./wire.ts";

const NAME = /^[a-z0-9][a-z0-9_-]{0,39}$/;
const WHAT = "change streaming profiles";
const B = PROFILE_BOUNDS;
const putBody = z.strictObject({
  chunk_tokens: z.number().int().min(B.chunkTokens.min).max(B.chunkTokens.max).optional(),
  timeout_ms: z.number().int().min(B.timeoutMs.min).max(B.timeoutMs.max).optional(),
  buffer_tokens: z.number().int().min(B.bufferTokens.min).max(B.bufferTokens.max).optional(),
  interval_ms: z.number().int().min(B.intervalMs.min).max(B.intervalMs.max).optional(),
});

type Row = typeof streamProfiles.$inferSelect;

function builtin(name: string): StreamProfile | undefined {
  return BUILTIN_PROFILES.find((p) => p.name === name);
}

/** A profile as the admin API shows it. */
function profileJson(p: StreamProfile, row: Row | null): StreamProfileJson {
  return {
    object: "stream_profile",
    name: p.name,
    chunk_tokens: p.chunkTokens,
    timeout_ms: p.timeoutMs,
    buffer_tokens: p.bufferTokens,
    interval_ms: p.intervalMs,
    builtin: builtin(p.name) !== undefined,
    overridden: builtin(p.name) !== undefined && row !== null,
    route: builtin(p.name) ? `/v1/${p.name === "copilot" ? "copilot/completions" : `${p.name}/chat/completions`}` : `/v1/agents/stream?type=${p.name}`,
    updated_at: row ? row.updatedAt.toISOString() : null,
  };
}

function fromRow(row: Row): StreamProfile {
  return { name: row.name, chunkTokens: row.chunkTokens, timeoutMs: row.timeoutMs, bufferTokens: row.bufferTokens, intervalMs: row.intervalMs };
}

function checkName(name: string): void {
  if (!NAME.test(name)) throw new ApiError("invalid_value", "A profile name is 1-40 lowercase letters, digits, '_' or '-', starting with a letter or digit.", { param: "name" });
}

/** The profile routes, mounted at `/admin/stream-profiles`. */
export const streamProfileRoutes = new Hono<AdminEnv>()
  .get("/", async (c) => {
    const rows = await reading(c, (db) => db.select().from(streamProfiles).orderBy(asc(streamProfiles.name)));
    const byName = new Map(rows.map((r) => [r.name, r]));
    const data = [
      ...BUILTIN_PROFILES.map((p) => {
        const row = byName.get(p.name) ?? null;
        return profileJson(row ? fromRow(row) : p, row);
      }),
      ...rows.filter((r) => !builtin(r.name)).map((r) => profileJson(fromRow(r), r)),
    ];
    return c.json({ object: "list", data, next_cursor: null });
  })
  .get("/:name", async (c) => {
    const name = c.req.param("name");
    const [row] = await reading(c, (db) => db.select().from(streamProfiles).where(eq(streamProfiles.name, name)));
    const base = row ? fromRow(row) : builtin(name);
    if (!base) throw new ApiError("not_found", `There is no streaming profile '${name}'. GET /admin/stream-profiles lists them.`);
    return c.json(profileJson(base, row ?? null));
  })
  .put("/:name", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const name = c.req.param("name");
    checkName(name);
    const body = await readJson(c, putBody);
    const { profile, row, created } = await inTransaction(c, async (db) => {
      const [before] = await db.select().from(streamProfiles).where(eq(streamProfiles.name, name)).for("update");
      const base = before ? fromRow(before) : builtin(name);
      const next: StreamProfile = {
        name,
        chunkTokens: body.chunk_tokens ?? base?.chunkTokens ?? missing("chunk_tokens"),
        timeoutMs: body.timeout_ms ?? base?.timeoutMs ?? missing("timeout_ms"),
        bufferTokens: body.buffer_tokens ?? base?.bufferTokens ?? missing("buffer_tokens"),
        intervalMs: body.interval_ms ?? base?.intervalMs ?? missing("interval_ms"),
      };
      if (next.bufferTokens < next.chunkTokens) {
        throw new ApiError("invalid_value", `buffer_tokens (${next.bufferTokens}) must hold at least one chunk (chunk_tokens ${next.chunkTokens}).`, { param: "buffer_tokens" });
      }
      const values = { chunkTokens: next.chunkTokens, timeoutMs: next.timeoutMs, bufferTokens: next.bufferTokens, intervalMs: next.intervalMs, updatedAt: new Date() };
      const [after] = await db
        .insert(streamProfiles)
        .values({ name, ...values })
        .onConflictDoUpdate({ target: streamProfiles.name, set: values })
        .returning();
      if (!after) throw new Error("stream profile upsert returned no row");
      await recordAudit(db, actorName(c.get("actor")), before ? "stream_profile.update" : "stream_profile.create", "stream_profile", name, null, {
        before: before ? profileJson(fromRow(before), before) : (base ? profileJson(base, null) : null),
        after: profileJson(next, after),
      });
      return { profile: next, row: after, created: !before && !builtin(name) };
    });
    await dropRoutingSnapshot(c);
    return c.json(profileJson(profile, row), created ? 201 : 200);
  })
  .delete("/:name", async (c) => {
    requireOperator(c.get("actor"), WHAT);
    const name = c.req.param("name");
    const deleted = await inTransaction(c, async (db) => {
      const [before] = await db.delete(streamProfiles).where(eq(streamProfiles.name, name)).returning();
      if (!before) {
        if (builtin(name)) throw new ApiError("conflict", `'${name}' is a built-in profile with its default settings: it cannot be removed. PUT changes it.`);
        throw new ApiError("not_found", `There is no streaming profile '${name}'. GET /admin/stream-profiles lists them.`);
      }
      await recordAudit(db, actorName(c.get("actor")), "stream_profile.delete", "stream_profile", name, null, { before: profileJson(fromRow(before), before) });
      return before;
    });
    await dropRoutingSnapshot(c);
    const restored = builtin(deleted.name);
    return c.json(restored ? { ...profileJson(restored, null), deleted: false, reset: true } : { object: "stream_profile", name, deleted: true });
  });

function missing(field: string): never {
  throw new ApiError("invalid_value", `A new streaming profile needs ${field} (and chunk_tokens, timeout_ms, buffer_tokens, interval_ms).`, { param: field });
}
