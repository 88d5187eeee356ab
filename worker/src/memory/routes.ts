/**
 * `/v1/memory/*` (docs/memory.md): any valid key of a tenant leaves breadcrumbs on and reads its
 * tenant's trails, whatever its scopes (the trails are the tenant's own data, like `/v1/usage`). A
 * trail of another tenant answers 404 exactly like one that does not exist.
 */
import { Hono } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { memoryDb } from "./db.ts";
import { hotTrails, leaveBreadcrumb, trailWithBreadcrumbs } from "./trails.ts";
import { parseBreadcrumbBody, parseHotQuery } from "./validate.ts";
import { breadcrumbJson, trailDetailJson, trailJson, type HotTrailsJson } from "./wire.ts";

/** The paths of the memory routes with one method each (for the gateway's 405 answers). */
export const MEMORY_ROUTE_METHODS = { "/v1/memory/breadcrumb": "POST", "/v1/memory/trails/hot": "GET" } as const;

/** The memory routes, mounted at `/v1/memory` behind the API key middleware. */
export const memoryRoutes = new Hono<AppEnv>()
  .post("/breadcrumb", async (c) => {
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch {
      throw new ApiError("invalid_json", "The request body is not valid JSON.");
    }
    const crumb = parseBreadcrumbBody(body);
    const deps = c.get("deps");
    const left = await memoryDb(deps, (db) => leaveBreadcrumb(db, c.get("identity").tenantId, crumb, deps.settings.memory));
    return c.json(breadcrumbJson(left));
  })
  .get("/trails/hot", async (c) => {
    const q = parseHotQuery(c.req.query());
    const deps = c.get("deps");
    const rows = await memoryDb(deps, (db) => hotTrails(db, c.get("identity").tenantId, { ...q, halfLifeHours: deps.settings.memory.halfLifeHours }));
    const body: HotTrailsJson = { object: "list", trails: rows.map(trailJson), count: rows.length, min_temp: q.minTemperature };
    return c.json(body);
  })
  .get("/trails/:id", async (c) => {
    const id = c.req.param("id");
    const deps = c.get("deps");
    const found = await memoryDb(deps, (db) => trailWithBreadcrumbs(db, c.get("identity").tenantId, id, deps.settings.memory.halfLifeHours));
    if (!found) throw new ApiError("not_found", `No memory trail with id ${id}.`, { param: "id" });
    return c.json(trailDetailJson(found.trail, found.breadcrumbs));
  });
