/**
 * The simulated engine's K and V matrices for a block range of a prompt (docs/fedattn.md,
 * "Participant"): deterministic stand-ins for what a real model's attention layers would hold, so
 * federated attention can run end to end without a GPU.
 */

import { DEFAULT_MAX_BYTES, MAX_RANK } from "../../../schema/contracts/fedattn-tensors.ts";

/** The dims of one block's K (and V) when none are given: 16 tokens × 64 head dims. */
export const DEFAULT_BLOCK_SHAPE: readonly number[] = [16, 64];

/** What simulatedKv takes. */
export interface SimulatedKvInput {
  model: string;
  prompt: string;
  /** First block of the range. */
  blockStart: number;
  /** Last block of the range (inclusive). */
  blockEnd: number;
  /** The dims of one block (rank 1 to 3); the tensors are [blocks in range, ...blockShape]. */
  blockShape?: readonly number[];
  /** Mixed into the hash, like an engine's sampling seed (default 0). */
  seed?: number;
}

/** K and V of a block range, float32 values in [-1, 1). */
export interface SimulatedKv {
  shape: number[];
  k: Float32Array;
  v: Float32Array;
}

/** Thrown for a block range or shape that cannot be produced; the message says which and why. */
export class KvShapeError extends Error {
  override readonly name = "KvShapeError";
}

const encoder = new TextEncoder();

/** 32-bit FNV-1a of a string's UTF-8 bytes. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of encoder.encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** mulberry32: a tiny 32-bit PRNG, plenty for test data (not for anything secret). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Checks a block range and block shape and returns the full tensor shape, refusing anything whose
 * two tensors would not fit one message of the tensor format (64 MiB).
 */
export function kvShape(blockStart: number, blockEnd: number, blockShape: readonly number[] = DEFAULT_BLOCK_SHAPE): number[] {
  for (const [name, n] of [["block_start", blockStart], ["block_end", blockEnd]] as const) {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new KvShapeError(`${name} must be an integer in 0..4294967295, got ${n}`);
  }
  if (blockEnd < blockStart) throw new KvShapeError(`block_end ${blockEnd} is before block_start ${blockStart}`);
  if (blockShape.length < 1 || blockShape.length > MAX_RANK - 1) {
    throw new KvShapeError(`shape must have 1 to ${MAX_RANK - 1} dims (the tensor adds the block axis), got [${blockShape.join(", ")}]`);
  }
  const shape = [blockEnd - blockStart + 1, ...blockShape];
  let elements = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 1) throw new KvShapeError(`shape dims must be integers >= 1, got [${blockShape.join(", ")}]`);
    elements *= d;
    // K and V, 4 bytes each, must fit one message (the header is small next to the margin left).
    if (elements * 8 > DEFAULT_MAX_BYTES - 1024) {
      throw new KvShapeError(`[${shape.join(", ")}] float32 K and V would not fit one ${DEFAULT_MAX_BYTES}-byte message; use fewer blocks per sync or a smaller shape`);
    }
  }
  return shape;
}

/**
 * K and V of blocks blockStart..blockEnd: a pure function of (model, prompt, block, seed). Each
 * block's values come from its own PRNG stream (mulberry32 seeded with FNV-1a of the four), K's
 * elements first and then V's, so a block has the same values whichever range it is asked in.
 */
export function simulatedKv(input: SimulatedKvInput): SimulatedKv {
  const shape = kvShape(input.blockStart, input.blockEnd, input.blockShape);
  const perBlock = shape.slice(1).reduce((a, b) => a * b, 1);
  const k = new Float32Array(perBlock * (shape[0] ?? 1));
  const v = new Float32Array(k.length);
  const seed = input.seed ?? 0;
  for (let b = input.blockStart, offset = 0; b <= input.blockEnd; b++, offset += perBlock) {
    const next = mulberry32(fnv1a(`${input.model}\u0000${input.prompt}\u0000${b}\u0000${seed}`));
    for (let i = 0; i < perBlock; i++) k[offset + i] = next() * 2 - 1;
    for (let i = 0; i < perBlock; i++) v[offset + i] = next() * 2 - 1;
  }
  return { shape, k, v };
}

/** The sum of a tensor's values in float64: what the simulator reports for an applied state. */
export function checksum(values: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] ?? 0;
  return sum;
}

/** Parses a shape written `16x64` or `16,64` (dims >= 1); null when it is not one. */
export function parseShape(text: string): number[] | null {
  const parts = text.trim().split(/[x,]/);
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p.trim()))) return null;
  const dims = parts.map((p) => Number(p.trim()));
  return dims.every((d) => Number.isSafeInteger(d) && d >= 1) ? dims : null;
}
