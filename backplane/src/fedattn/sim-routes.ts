/**
 * Switchyard's own federated-attention routes on the simulated engine (vLLM has no API that exports
 * or imports K/V; see docs/fedattn.md, "Participant"):
 *
 *   POST /switchyard/fedattn/kv       {model?, prompt, block_start, block_end, shape?, weight?, dtype?}
 *                                      → one tensor message (application/octet-stream)
 *   POST /switchyard/fedattn/apply    a tensor message → {applied, block_start, block_end, k_checksum, v_checksum}
 *   GET  /switchyard/fedattn/applied  → {object: "list", data: [the last state applied per block range]}
 *
 * Errors are the simulator's (vLLM-shaped `{"error":{"message","type","param","code"}}`).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import { decodeContribution, DEFAULT_MAX_BYTES, encodeContribution, TensorFormatError, tensorToFloat32 } from "../../../schema/contracts/fedattn-tensors.ts";
import { resolveModel, type EngineState } from "../sim/engine.ts";
import { badRequest, sendError, sendJson, SimHttpError } from "../sim/errors.ts";
import { checksum, KvShapeError, simulatedKv } from "./kv.ts";

/** The path of the K/V export route. */
export const KV_PATH = "/switchyard/fedattn/kv";
/** The path of the route that applies an aggregate. */
export const APPLY_PATH = "/switchyard/fedattn/apply";
/** The path listing what was applied. */
export const APPLIED_PATH = "/switchyard/fedattn/applied";

/** What the simulator remembers of the last aggregate applied to one block range. */
export interface AppliedState {
  block_start: number;
  block_end: number;
  dtype: "float32" | "float16";
  weight: number;
  k_shape: number[];
  v_shape: number[];
  /** Sum of K's values, in float64. */
  k_checksum: number;
  /** Sum of V's values, in float64. */
  v_checksum: number;
  applied_at: string;
}

/** The simulator's federated-attention state: the last state applied per block range ("start-end"). */
export interface FedattnSimState {
  applied: Map<string, AppliedState>;
}

/** An empty state, for a new engine. */
export function createFedattnSimState(): FedattnSimState {
  return { applied: new Map() };
}

const kvRequest = z.strictObject({
  model: z.string().min(1).optional(),
  prompt: z.string(),
  block_start: z.number().int().min(0).max(0xffffffff),
  block_end: z.number().int().min(0).max(0xffffffff),
  shape: z.array(z.number().int().min(1)).min(1).max(3).optional(),
  weight: z.number().min(0).refine(Number.isFinite, "must be finite").optional(),
  dtype: z.enum(["float32", "float16"]).optional(),
});

function parseJson(req: IncomingMessage, raw: Buffer): z.infer<typeof kvRequest> {
  const media = (req.headers["content-type"] ?? "").split(";", 1)[0]?.trim().toLowerCase();
  if (media !== "application/json") throw badRequest(`${KV_PATH} takes a JSON body (content-type: application/json).`);
  let json: unknown;
  try {
    json = JSON.parse(raw.toString("utf8"));
  } catch {
    throw badRequest(`${KV_PATH}: the body is not JSON.`);
  }
  const parsed = kvRequest.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`${KV_PATH}: invalid ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

function handleKv(state: EngineState, req: IncomingMessage, raw: Buffer, res: ServerResponse): void {
  const body = parseJson(req, raw);
  // The model only seeds the values; naming one the engine does not serve fails as vLLM would.
  const served = resolveModel(state, body.model ?? null, "completion");
  let message: Uint8Array;
  try {
    const kv = simulatedKv({
      model: body.model ?? served.model.name,
      prompt: body.prompt,
      blockStart: body.block_start,
      blockEnd: body.block_end,
      blockShape: body.shape ?? state.options.fedattnShape,
      seed: state.options.seed,
    });
    message = encodeContribution({
      blockStart: body.block_start,
      blockEnd: body.block_end,
      weight: body.weight ?? 1,
      dtype: body.dtype ?? "float32",
      k: { shape: kv.shape, data: kv.k },
      v: { shape: kv.shape, data: kv.v },
    });
  } catch (error) {
    if (error instanceof KvShapeError || error instanceof TensorFormatError) throw badRequest(`${KV_PATH}: ${error.message}`);
    throw error;
  }
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": message.byteLength });
  res.end(message);
}

function handleApply(state: EngineState, raw: Buffer, res: ServerResponse): void {
  let decoded;
  try {
    decoded = decodeContribution(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
  } catch (error) {
    if (error instanceof TensorFormatError) throw badRequest(`${APPLY_PATH}: the body is not a tensor message (docs/fedattn.md): ${error.message}`);
    throw error;
  }
  const applied: AppliedState = {
    block_start: decoded.blockStart,
    block_end: decoded.blockEnd,
    dtype: decoded.dtype,
    weight: decoded.weight,
    k_shape: decoded.k.shape,
    v_shape: decoded.v.shape,
    k_checksum: checksum(tensorToFloat32(decoded.k)),
    v_checksum: checksum(tensorToFloat32(decoded.v)),
    applied_at: new Date().toISOString(),
  };
  state.fedattn.applied.set(`${applied.block_start}-${applied.block_end}`, applied);
  const { block_start, block_end, k_checksum, v_checksum } = applied;
  sendJson(res, 200, JSON.stringify({ applied: true, block_start, block_end, k_checksum, v_checksum }));
}

function listApplied(state: EngineState, res: ServerResponse): void {
  const data = [...state.fedattn.applied.values()].sort((a, b) => a.block_start - b.block_start || a.block_end - b.block_end);
  sendJson(res, 200, JSON.stringify({ object: "list", data }));
}

/** Reads a body of at most DEFAULT_MAX_BYTES (413 beyond), then hands it on; errors become the simulator's error bodies. */
function withBody(req: IncomingMessage, res: ServerResponse, handle: (raw: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let refused = false;
  // A client that resets the connection mid-upload must not crash the engine.
  req.on("error", () => res.destroy());
  req.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > DEFAULT_MAX_BYTES && !refused) {
      refused = true;
      sendError(res, new SimHttpError(413, "BadRequestError", `The body is over the tensor format's ${DEFAULT_MAX_BYTES}-byte limit.`));
    }
    if (!refused) chunks.push(chunk);
  });
  req.on("end", () => {
    if (refused) return;
    try {
      handle(Buffer.concat(chunks));
    } catch (error) {
      if (error instanceof SimHttpError) return sendError(res, error);
      sendError(res, new SimHttpError(500, "InternalServerError", error instanceof Error ? error.message : String(error)));
    }
  });
}

/** Answers the federated-attention routes; false when `path` is none of them. */
export function fedattnRoute(state: EngineState, req: IncomingMessage, res: ServerResponse, path: string): boolean {
  const method = req.method ?? "GET";
  if (path !== KV_PATH && path !== APPLY_PATH && path !== APPLIED_PATH) return false;
  const wanted = path === APPLIED_PATH ? "GET" : "POST";
  if (method !== wanted) {
    req.resume();
    sendJson(res, 405, JSON.stringify({ detail: "Method Not Allowed" }));
    return true;
  }
  if (path === APPLIED_PATH) listApplied(state, res);
  else if (path === KV_PATH) withBody(req, res, (raw) => handleKv(state, req, raw, res));
  else withBody(req, res, (raw) => handleApply(state, raw, res));
  return true;
}
