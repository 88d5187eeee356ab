/**
 * `/admin/nodes/:id/adapters` (operator only): the LoRA adapters a node's engines serve, and loading
 * or unloading one there, through the node's signed management routes
 * (backplane/src/management/adapters.ts). Each load and unload writes an audit row.
 *
 * - `GET /admin/nodes/:id/adapters`: per engine, its base models and adapters, as the node says now.
 * - `POST /admin/nodes/:id/adapters` `{name, source?}`: `name` must be a catalogue adapter (a model
 *   with `base_model`); `source` defaults to its `adapter_source`.
 * - `DELETE /admin/nodes/:id/adapters/:name`.
 *
 * The node's next heartbeat (sent at once by the backplane) carries the change to routing. A node's
 * refusal is relayed with its message: 400 (the engine rejected the adapter), 404, 409 (no engine
 * serves the base, or runtime loading is off: VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); an unreachable
 * node is 502.
 */
import { eq } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { models } from "../../../schema/tables/index.ts";
import type { AdminEnv } from "../admin/auth.ts";
import { readJson, reading } from "../admin/http.ts";
import { ApiError } from "../errors.ts";
import { ADAPTER_LOAD_TIMEOUT_MS, ADAPTERS_MANAGEMENT_PATH } from "../routing/adapters.ts";
import { auditNode, nodeOf, refused } from "./admin-target.ts";
import { callNodeManagement } from "./management.ts";

/** A listing or an unload answers quickly; a load waits for the engine. */
const LIST_TIMEOUT_MS = 10_000;

const loadBody = z.strictObject({
  name: z.string().min(1).max(200),
  source: z.string().min(1).max(4096).optional(),
});

/** One engine's adapters as the node reports them. */
interface EngineAdapters {
  id: string;
  kind: string;
  healthy: boolean;
  base_models: string[];
  adapters: { name: string; base: string; source: string | null }[];
}

/** The adapter routes, mounted at `/admin/nodes` beside nodes/admin.ts. */
export const nodeAdapterRoutes = new Hono<AdminEnv>()
  .get("/:id/adapters", async (c) => {
    const node = await nodeOf(c);
    const answer = await callNodeManagement(c.get("deps"), node, "GET", ADAPTERS_MANAGEMENT_PATH, undefined, LIST_TIMEOUT_MS);
    if (answer.status !== 200) throw refused(node, answer);
    const engines = (answer.body as { engines?: EngineAdapters[] } | null)?.engines ?? [];
    const data = engines.flatMap((e) => e.adapters.map((a) => ({ object: "lora_adapter" as const, name: a.name, base: a.base, source: a.source, engine: e.id })));
    return c.json({ object: "list", node_id: node.id, data, engines, next_cursor: null });
  })
  .post("/:id/adapters", async (c) => {
    const node = await nodeOf(c);
    const body = await readJson(c, loadBody);
    const [model] = await reading(c, (db) => db.select().from(models).where(eq(models.id, body.name)));
    if (!model?.baseModel) {
      throw new ApiError("invalid_value", `Invalid name: '${body.name}' is not a LoRA adapter of the catalogue (a model with base_model; PUT /admin/models/:id).`, { param: "name" });
    }
    const source = body.source ?? model.adapterSource;
    if (source === null) {
      throw new ApiError("invalid_value", `Invalid source: the adapter '${body.name}' has no adapter_source in the catalogue, so give the path or hub id to load it from.`, { param: "source" });
    }
    const request = { name: model.id, source, base: model.baseModel };
    const answer = await callNodeManagement(c.get("deps"), node, "POST", ADAPTERS_MANAGEMENT_PATH, request, ADAPTER_LOAD_TIMEOUT_MS);
    if (answer.status !== 200) throw refused(node, answer);
    const result = answer.body as { status?: string; engine?: string } | null;
    await auditNode(c, "node.adapter_load", node, { adapter: model.id, base: model.baseModel, source, engine: result?.engine ?? null, status: result?.status ?? null });
    return c.json({ ...(answer.body as object), node_id: node.id });
  })
  .delete("/:id/adapters/:name", async (c) => {
    const node = await nodeOf(c);
    const name = c.req.param("name");
    const answer = await callNodeManagement(c.get("deps"), node, "DELETE", `${ADAPTERS_MANAGEMENT_PATH}/${encodeURIComponent(name)}`, undefined, LIST_TIMEOUT_MS);
    if (answer.status !== 200) throw refused(node, answer);
    const result = answer.body as { engines?: string[] } | null;
    await auditNode(c, "node.adapter_unload", node, { adapter: name, engines: result?.engines ?? [] });
    return c.json({ ...(answer.body as object), node_id: node.id });
  });
