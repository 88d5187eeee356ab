/**
 * Federated-attention aggregation latency (issue 16): 3 and 8 participants at 1, 8 and 32 MB per
 * contribution (K + V as float32, shaped [32 heads, tokens, 128]). Prints, per case, the median of
 * RUNS runs of `aggregate` alone and of a whole sync on the coordinator (decode every contribution,
 * aggregate, encode the answer). Not part of bench/run.ts; run with `npx node bench/fedattn.ts`.
 */

import { aggregate, type ParticipantContribution } from "../schema/contracts/fedattn-aggregate.ts";
import { decodeContribution, encodeContribution } from "../schema/contracts/fedattn-tensors.ts";

const RUNS = 7;
const HEADS = 32;
const HEAD_DIM = 128;
const MIB = 1024 * 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function message(seed: number, mb: number): Uint8Array {
  const tokens = (mb * MIB) / 4 / 2 / HEADS / HEAD_DIM;
  const shape = [HEADS, tokens, HEAD_DIM];
  const n = HEADS * tokens * HEAD_DIM;
  const k = new Float32Array(n);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    k[i] = Math.sin(seed + i * 1e-3);
    v[i] = Math.cos(seed - i * 1e-3);
  }
  return encodeContribution({ blockStart: 0, blockEnd: 7, weight: seed, dtype: "float32", k: { shape, data: k }, v: { shape, data: v } });
}

console.log(`fedattn aggregation, median of ${RUNS} runs (node ${process.version})`);
console.log("participants  MB/contribution  aggregate ms  sync ms (decode + aggregate + encode)");
for (const participants of [3, 8]) {
  for (const mb of [1, 8, 32]) {
    const bytes = Array.from({ length: participants }, (_, i) => message(i + 1, mb));
    const decoded = (): ParticipantContribution[] => bytes.map((b, i) => ({ participant: `node-${i}`, contribution: decodeContribution(b) }));
    const inputs = decoded();
    aggregate(inputs); // warm-up: compile the loops before timing
    const agg: number[] = [];
    const sync: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      let t = performance.now();
      aggregate(inputs);
      agg.push(performance.now() - t);
      t = performance.now();
      for (const range of aggregate(decoded())) encodeContribution(range);
      sync.push(performance.now() - t);
    }
    console.log(`${String(participants).padStart(12)}  ${String(mb).padStart(15)}  ${median(agg).toFixed(1).padStart(12)}  ${median(sync).toFixed(1).padStart(8)}`);
  }
}
