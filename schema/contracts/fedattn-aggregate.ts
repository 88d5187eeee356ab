/**
 * Aggregation of federated-attention contributions (docs/fedattn.md, "Aggregation"): per block
 * range, the weighted average of every participant's K and of every participant's V, with the
 * weights normalised to sum to 1.
 *
 * Rules, checked before any arithmetic:
 * - at least one contribution (no_contributions);
 * - every weight finite and >= 0, and their sum per block range > 0 (bad_weight);
 * - at most one contribution per participant and block range (duplicate_contribution);
 * - every participant sent the same set of block ranges: a range that some participants sent and
 *   others did not is refused, naming the range and who is missing it (unmatched_block_range);
 * - within a block range, every K has the same shape and every V has the same shape
 *   (shape_mismatch, naming the first participant that differs from the first one).
 *
 * Sums are kept in float64 and the result is rounded once at the end: to float16 when every input
 * of the range was float16 (the participants chose half precision, and the answer is half the
 * bytes), otherwise to float32 (mixed inputs are never rounded down to float16).
 */

import { float16Table, float32ToFloat16Bits } from "./fedattn-float16.ts";
import type { Contribution, Dtype, Tensor } from "./fedattn-tensors.ts";

/** One participant's decoded contribution. */
export interface ParticipantContribution {
  participant: string;
  contribution: Contribution;
}

/** What went wrong, usable as the error code of a 4xx answer. */
export type AggregateErrorCode = "no_contributions" | "bad_weight" | "duplicate_contribution" | "unmatched_block_range" | "shape_mismatch";

/** A set of contributions that cannot be aggregated; `participant` and `blockRange` say where, when known. */
export class AggregateError extends Error {
  override readonly name = "AggregateError";
  readonly code: AggregateErrorCode;
  readonly participant: string | undefined;
  readonly blockRange: string | undefined;
  constructor(code: AggregateErrorCode, message: string, where: { participant?: string | undefined; blockRange?: string } = {}) {
    super(message);
    this.code = code;
    this.participant = where.participant;
    this.blockRange = where.blockRange;
  }
}

/** The aggregate of one block range; `weight` is the sum of the raw weights that went in. */
export interface AggregatedRange extends Contribution {
  participants: string[];
}

/** "start-end", the key of a block range in errors and maps. */
export function blockRangeKey(c: { blockStart: number; blockEnd: number }): string {
  return `${c.blockStart}-${c.blockEnd}`;
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The weighted average per block range, in ascending block order. Throws AggregateError when the
 * set cannot be aggregated (see the rules above); nothing is computed unless all of it can be.
 */
export function aggregate(contributions: readonly ParticipantContribution[]): AggregatedRange[] {
  if (contributions.length === 0) throw new AggregateError("no_contributions", "no contributions to aggregate");
  const ranges = new Map<string, ParticipantContribution[]>();
  const participants = new Set<string>();
  for (const pc of contributions) {
    const { participant, contribution: c } = pc;
    const key = blockRangeKey(c);
    if (!Number.isFinite(c.weight) || c.weight < 0) {
      throw new AggregateError("bad_weight", `participant ${participant} sent weight ${c.weight} for blocks ${key}; weights must be finite and >= 0`, { participant, blockRange: key });
    }
    participants.add(participant);
    const list = ranges.get(key) ?? [];
    if (list.some((other) => other.participant === participant)) {
      throw new AggregateError("duplicate_contribution", `participant ${participant} sent blocks ${key} more than once`, { participant, blockRange: key });
    }
    list.push(pc);
    ranges.set(key, list);
  }
  for (const [key, list] of ranges) {
    if (list.length === participants.size) continue;
    const present = new Set(list.map((pc) => pc.participant));
    const missing = [...participants].filter((p) => !present.has(p));
    throw new AggregateError(
      "unmatched_block_range",
      `blocks ${key} were sent by ${[...present].join(", ")} but not by ${missing.join(", ")}; every participant must send the same block ranges`,
      { participant: missing[0], blockRange: key },
    );
  }
  for (const [key, list] of ranges) {
    const first = list[0] as ParticipantContribution;
    for (const pc of list) {
      for (const name of ["k", "v"] as const) {
        const want = first.contribution[name].shape;
        const got = pc.contribution[name].shape;
        if (!sameShape(want, got)) {
          throw new AggregateError(
            "shape_mismatch",
            `participant ${pc.participant} sent ${name.toUpperCase()} of shape [${got.join(", ")}] for blocks ${key}, but ${first.participant} sent [${want.join(", ")}]`,
            { participant: pc.participant, blockRange: key },
          );
        }
      }
    }
    const total = list.reduce((s, pc) => s + pc.contribution.weight, 0);
    if (!(total > 0) || !Number.isFinite(total)) {
      throw new AggregateError("bad_weight", `the weights for blocks ${key} sum to ${total}; they must sum to a finite number > 0`, { blockRange: key });
    }
  }

  const keys = [...ranges.keys()].sort((a, b) => {
    const [as, ae] = a.split("-").map(Number) as [number, number];
    const [bs, be] = b.split("-").map(Number) as [number, number];
    return as - bs || ae - be;
  });
  return keys.map((key) => aggregateRange(ranges.get(key) as ParticipantContribution[]));
}

function aggregateRange(list: readonly ParticipantContribution[]): AggregatedRange {
  const first = (list[0] as ParticipantContribution).contribution;
  const total = list.reduce((s, pc) => s + pc.contribution.weight, 0);
  const dtype: Dtype = list.every((pc) => pc.contribution.dtype === "float16") ? "float16" : "float32";
  const weights = list.map((pc) => pc.contribution.weight / total);
  return {
    dtype,
    blockStart: first.blockStart,
    blockEnd: first.blockEnd,
    weight: total,
    participants: list.map((pc) => pc.participant),
    k: averageTensor(list.map((pc) => pc.contribution.k), weights, dtype),
    v: averageTensor(list.map((pc) => pc.contribution.v), weights, dtype),
  };
}

// Elements per pass: a 256 KiB float64 accumulator that stays in the CPU cache while every input
// adds its slice to it, instead of one accumulator as large as the tensor streamed through memory
// once per participant (measured with bench/fedattn.ts: 3 × 8 MB from about 18 to 12 ms, 3 × 32 MB from about 125 to 50 ms).
const CHUNK = 32 * 1024;

/** Σ wᵢ·xᵢ over same-shaped tensors in float64, chunk by chunk, with no allocation per element. */
function averageTensor(tensors: readonly Tensor[], weights: readonly number[], dtype: Dtype): Tensor {
  const shape = [...(tensors[0] as Tensor).shape];
  const n = (tensors[0] as Tensor).data.length;
  const acc = new Float64Array(Math.min(n, CHUNK));
  const half = float16Table();
  const out = dtype === "float16" ? new Uint16Array(n) : new Float32Array(n);
  for (let start = 0; start < n; start += CHUNK) {
    const end = Math.min(n, start + CHUNK);
    const len = end - start;
    for (let t = 0; t < tensors.length; t++) {
      const tensor = tensors[t] as Tensor;
      const w = weights[t] as number;
      // Split by dtype outside the loop so each loop body reads one array type (monomorphic).
      if (tensor.dtype === "float32") {
        const x = tensor.data;
        if (t === 0) for (let i = 0; i < len; i++) acc[i] = w * (x[start + i] as number);
        else for (let i = 0; i < len; i++) acc[i] = (acc[i] as number) + w * (x[start + i] as number);
      } else {
        const x = tensor.data;
        if (t === 0) for (let i = 0; i < len; i++) acc[i] = w * (half[x[start + i] as number] as number);
        else for (let i = 0; i < len; i++) acc[i] = (acc[i] as number) + w * (half[x[start + i] as number] as number);
      }
    }
    if (out instanceof Uint16Array) {
      for (let i = 0; i < len; i++) out[start + i] = float32ToFloat16Bits(acc[i] as number);
    } else {
      // Float32Array.set from a Float64Array rounds each element to float32 (nearest) in native code.
      out.set(len === acc.length ? acc : acc.subarray(0, len), start);
    }
  }
  return out instanceof Uint16Array ? { dtype: "float16", shape, data: out } : { dtype: "float32", shape, data: out };
}
