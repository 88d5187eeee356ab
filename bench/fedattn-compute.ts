/**
 * Federated-attention aggregation in process (issue 16), no servers: per case, `aggregate` alone
 * and the coordinator's whole share of a sync (decode every contribution, aggregate, encode the
 * answer) on Node's V8, over the same contributions `fedattn-sync.ts` sends through the gateway.
 */
import { aggregate, type ParticipantContribution } from "../schema/contracts/fedattn-aggregate.ts";
import { decodeContribution, encodeContribution } from "../schema/contracts/fedattn-tensors.ts";
import { percentile } from "./stats.ts";

const HEADS = 32;
const HEAD_DIM = 128;
const MIB = 1024 * 1024;

/** One measured combination: participants, each sending a contribution of `mb` MiB (K + V). */
export interface FedattnCase {
  participants: number;
  mb: number;
}

/** Every case of the issue: 3 and 8 participants at 1, 8 and 32 MB per contribution. */
export const FEDATTN_CASES: readonly FedattnCase[] = [3, 8].flatMap((participants) => [1, 8, 32].map((mb) => ({ participants, mb })));
/** `--quick`: 3 participants at 1 and 8 MB (the target's case). */
export const FEDATTN_QUICK_CASES: readonly FedattnCase[] = [
  { participants: 3, mb: 1 },
  { participants: 3, mb: 8 },
];

/**
 * Participant `seed`'s contribution (blocks 0–7, weight `seed`): float32 K and V shaped
 * [32 heads, tokens, 128], `mb` MiB for both together.
 */
export function contributionMessage(seed: number, mb: number): Uint8Array<ArrayBuffer> {
  const tokens = (mb * MIB) / 4 / 2 / HEADS / HEAD_DIM;
  const shape = [HEADS, tokens, HEAD_DIM];
  const n = HEADS * tokens * HEAD_DIM;
  const k = new Float32Array(n);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    k[i] = Math.sin(seed + i * 1e-3);
    v[i] = Math.cos(seed - i * 1e-3);
  }
  const bytes = encodeContribution({ blockStart: 0, blockEnd: 7, weight: seed, dtype: "float32", k: { shape, data: k }, v: { shape, data: v } });
  // A fresh copy typed over a plain ArrayBuffer: what fetch and WebCrypto take.
  return new Uint8Array(bytes);
}

/** In-process times of one case, ms. */
export interface ComputeRow extends FedattnCase {
  runs: number;
  aggregateP50: number | null;
  /** Decode every contribution, aggregate, encode the answer. */
  syncP50: number | null;
}

/** Times every case `runs` times after one warm-up (median reported). */
export function runFedattnCompute(cases: readonly FedattnCase[], runs = 7): ComputeRow[] {
  const rows: ComputeRow[] = [];
  for (const c of cases) {
    const bytes = Array.from({ length: c.participants }, (_, i) => contributionMessage(i + 1, c.mb));
    const decoded = (): ParticipantContribution[] => bytes.map((b, i) => ({ participant: `node-${i}`, contribution: decodeContribution(b) }));
    const inputs = decoded();
    aggregate(inputs); // warm-up: compile the loops before timing
    const agg: number[] = [];
    const sync: number[] = [];
    for (let r = 0; r < runs; r++) {
      let t = performance.now();
      aggregate(inputs);
      agg.push(performance.now() - t);
      t = performance.now();
      for (const range of aggregate(decoded())) encodeContribution(range);
      sync.push(performance.now() - t);
    }
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    rows.push({ ...c, runs, aggregateP50: percentile(sorted(agg), 50), syncP50: percentile(sorted(sync), 50) });
  }
  return rows;
}
