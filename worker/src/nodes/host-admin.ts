/**
 * `/admin/nodes/:id/…` host management (operator only): what a node's engines serve and Ollama
 * engines keep on disk, a model's details, pulling and deleting models on Ollama engines, and the
 * host's CPU, memory, GPUs and disk — through the node's signed management routes
 * (backplane/src/management/routes.ts). Pulls and deletes write an audit row.
 *
 * - `GET /admin/nodes/:id/models`: one row per engine and model (served now, and/or on an Ollama disk).
 * - `GET /admin/nodes/:id/models/:model`: Ollama's `show` of the model (`:model` URL-encoded: `llama3.2%3A3b`).
 * - `DELETE /admin/nodes/:id/models/:model`.
 * - `POST /admin/nodes/:id/models/pull` `{model, engine?}`: Ollama's progress as server-sent events
 *   (pull-events.ts), relayed as it comes; the operator going away ends the node call.
 * - `GET /admin/nodes/:id/system`: CPU, memory, GPUs, disk and the Ollama engines' model storage.
 *
 * Model routes take `?engine=<id>` (the pull: `engine` in the body) to pick one of several Ollama
 * engines. A node's refusal is relayed with its message and the node named: 404 (unknown model), 409
 * (no Ollama engine, or several and none named), 400; an unreachable node is 502, one that does not
 * answer in time 504, both naming the node.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AdminEnv } from "../admin/auth.ts";
import { readJson, readQuery } from "../admin/http.ts";
import { auditNode, nodeOf, refused } from "./admin-target.ts";
import type { NodeModelJson, NodeSystemJson } from "./host-wire.ts";
import { callNodeManagement, openNodeManagement, readManagementAnswer } from "./management.ts";
import { pullEvents } from "./pull-events.ts";
import type { SystemResources } from "../../../schema/contracts/system-resources.ts";

/** The node answers listings and resources itself within 10 s (its own Ollama and nvidia-smi deadlines). */
const READ_TIMEOUT_MS = 15_000;
/** The node gives Ollama 30 s for a show or delete. */
const MODEL_TIMEOUT_MS = 35_000;
/** Time for the node's headers of a pull (Ollama answers once it has the manifest); the pull itself may take minutes. */
const PULL_START_TIMEOUT_MS = 60_000;
const MODELS_PATH = "/management/models";
const SYSTEM_PATH = "/management/system/resources";

const ENGINE_ID = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "must be an engine id of the node");
const engineQuery = z.object({ engine: ENGINE_ID.optional() });
const pullBody = z.strictObject({ model: z.string().min(1).max(500), engine: ENGINE_ID.optional() });

/** `GET /management/models` of the node. */
interface NodeModels {
  engines: { id: string; kind: string; healthy: boolean; models: string[] }[];
  /** Per Ollama engine, its models on disk (`/api/tags`); null when Ollama did not answer. */
  ollama: { engine: string; models: { name: string; size?: number; digest?: string; modified_at?: string; details?: Record<string, unknown> }[] | null }[];
}

/** The node's resources and model listing as NodeSystemJson. */
function systemJson(nodeId: string, r: SystemResources, listing: NodeModels): NodeSystemJson {
  return {
    object: "node_system",
    node_id: nodeId,
    cpu: { cores: r.cpu.cores, model: r.cpu.model, load_average: r.cpu.loadAverage },
    memory: { total_bytes: r.memory.totalBytes, available_bytes: r.memory.availableBytes, used_bytes: r.memory.usedBytes },
    gpus: r.gpus.map((g) => ({
      index: g.index,
      name: g.name,
      uuid: g.uuid,
      utilization_pct: g.utilizationPct,
      memory_used_bytes: g.memoryUsedBytes,
      memory_total_bytes: g.memoryTotalBytes,
      temperature_c: g.temperatureC,
      power_draw_w: g.powerDrawW,
    })),
    gpu_error: r.gpuError,
    disk: { path: r.disk.path, total_bytes: r.disk.totalBytes, free_bytes: r.disk.freeBytes },
    model_storage: listing.ollama.map((o) => ({
      engine: o.engine,
      models: o.models?.length ?? null,
      bytes: o.models === null ? null : o.models.reduce((sum, m) => sum + (m.size ?? 0), 0),
    })),
  };
}

const text = (value: unknown): string | null => (typeof value === "string" && value !== "" ? value : null);

/** The node's listing as one row per engine and model. */
function modelRows(answer: NodeModels): NodeModelJson[] {
  return answer.engines.flatMap((engine) => {
    const disk = answer.ollama.find((o) => o.engine === engine.id)?.models ?? null;
    const names = [...new Set([...engine.models, ...(disk ?? []).map((m) => m.name)])];
    return names.map((name): NodeModelJson => {
      const stored = disk?.find((m) => m.name === name);
      return {
        object: "node_model",
        id: name,
        engine: engine.id,
        engine_kind: engine.kind,
        served: engine.models.includes(name),
        on_disk: disk === null ? null : stored !== undefined,
        size_bytes: stored?.size ?? null,
        modified_at: text(stored?.modified_at),
        digest: text(stored?.digest),
        parameter_size: text(stored?.details?.parameter_size),
        quantization_level: text(stored?.details?.quantization_level),
      };
    });
  });
}

/** `path` with `?engine=` when one was named. */
function withEngine(path: string, engine: string | undefined): string {
  return engine === undefined ? path : `${path}?${new URLSearchParams({ engine }).toString()}`;
}

/** The host management routes, mounted at `/admin/nodes` beside nodes/admin.ts. */
export const nodeHostRoutes = new Hono<AdminEnv>()
  .get("/:id/models", async (c) => {
    const node = await nodeOf(c);
    const answer = await callNodeManagement(c.get("deps"), node, "GET", MODELS_PATH, undefined, READ_TIMEOUT_MS);
    if (answer.status !== 200) throw refused(node, answer);
    const listing = answer.body as NodeModels;
    const engines = listing.engines.map((e) => ({
      id: e.id,
      kind: e.kind,
      healthy: e.healthy,
      // Ollama engines list their disk; null when that listing failed (their rows then have on_disk null).
      disk_listed: e.kind === "ollama" ? (listing.ollama.find((o) => o.engine === e.id)?.models ?? null) !== null : null,
    }));
    return c.json({ object: "list", node_id: node.id, data: modelRows(listing), engines, next_cursor: null });
  })
  .post("/:id/models/pull", async (c) => {
    const node = await nodeOf(c);
    const body = await readJson(c, pullBody);
    const deps = c.get("deps");
    const path = withEngine(`${MODELS_PATH}/pull`, body.engine);
    const response = await openNodeManagement(deps, node, "POST", path, { model: body.model }, PULL_START_TIMEOUT_MS, c.req.raw.signal);
    if (response.status !== 200 || response.body === null) throw refused(node, await readManagementAnswer(response));
    // Audited once the node has started the pull: its outcome is the stream's last event.
    await auditNode(c, "node.model_pull", node, { model: body.model, engine: body.engine ?? null }).catch(async (err: unknown) => {
      await response.body?.cancel();
      throw err;
    });
    // A fetch body is bytes; workers-types leaves its chunk type open.
    const progress = response.body as ReadableStream<Uint8Array>;
    return c.body(pullEvents(progress, { nodeId: node.id, model: body.model }), 200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
    });
  })
  .get("/:id/models/:model{.+}", async (c) => {
    const node = await nodeOf(c);
    const model = c.req.param("model");
    const { engine } = readQuery(c, engineQuery);
    const answer = await callNodeManagement(c.get("deps"), node, "GET", withEngine(`${MODELS_PATH}/${encodeURIComponent(model)}`, engine), undefined, MODEL_TIMEOUT_MS);
    if (answer.status !== 200) throw refused(node, answer);
    return c.json({ ...(answer.body as object), object: "node_model_info", id: model, node_id: node.id });
  })
  .delete("/:id/models/:model{.+}", async (c) => {
    const node = await nodeOf(c);
    const model = c.req.param("model");
    const { engine } = readQuery(c, engineQuery);
    const answer = await callNodeManagement(c.get("deps"), node, "DELETE", withEngine(`${MODELS_PATH}/${encodeURIComponent(model)}`, engine), undefined, MODEL_TIMEOUT_MS);
    if (answer.status !== 200) throw refused(node, answer);
    const deleted = (answer.body as { engine?: unknown } | null)?.engine;
    const engineId = typeof deleted === "string" ? deleted : (engine ?? null);
    await auditNode(c, "node.model_delete", node, { model, engine: engineId });
    return c.json({ object: "node_model", id: model, deleted: true, engine: engineId, node_id: node.id });
  })
  .get("/:id/system", async (c) => {
    const node = await nodeOf(c);
    const deps = c.get("deps");
    const [resources, models] = await Promise.all([
      callNodeManagement(deps, node, "GET", SYSTEM_PATH, undefined, READ_TIMEOUT_MS),
      callNodeManagement(deps, node, "GET", MODELS_PATH, undefined, READ_TIMEOUT_MS),
    ]);
    if (resources.status !== 200) throw refused(node, resources);
    if (models.status !== 200) throw refused(node, models);
    return c.json(systemJson(node.id, resources.body as SystemResources, models.body as NodeModels));
  });
