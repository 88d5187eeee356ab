import { describe, expect, it } from "vitest";
import { aggregate, AggregateError, type AggregateErrorCode, type ParticipantContribution } from "../../schema/contracts/fedattn-aggregate.ts";
import { decodeContribution, encodeContribution, float16BitsToFloat32, float32ToFloat16Bits, tensorToFloat32, type Contribution, type Dtype } from "../../schema/contracts/fedattn-tensors.ts";

const SHAPE = [2, 3, 4];
const N = 24;

/** A participant's contribution as it arrives: encoded, then decoded as the coordinator would. */
function sent(participant: string, seed: number, weight: number, options: { blockStart?: number; blockEnd?: number; dtype?: Dtype; kShape?: number[]; vShape?: number[] } = {}): ParticipantContribution {
  const kShape = options.kShape ?? SHAPE;
  const vShape = options.vShape ?? SHAPE;
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const bytes = encodeContribution({
    blockStart: options.blockStart ?? 0,
    blockEnd: options.blockEnd ?? 7,
    weight,
    dtype: options.dtype ?? "float32",
    k: { shape: kShape, data: Float32Array.from({ length: size(kShape) }, (_, i) => seed + i * 0.125) },
    v: { shape: vShape, data: Float32Array.from({ length: size(vShape) }, (_, i) => seed * 2 - i * 0.25) },
  });
  return { participant, contribution: decodeContribution(bytes) };
}

function aggregateError(fn: () => unknown): AggregateError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AggregateError);
    return err as AggregateError;
  }
  throw new Error("expected an AggregateError, nothing was thrown");
}

const expectCode = (fn: () => unknown, code: AggregateErrorCode): AggregateError => {
  const e = aggregateError(fn);
  expect(e.code).toBe(code);
  return e;
};

describe("fedattn aggregation", () => {
  it("answers the weighted average of three participants' K and V, weights normalised to sum to 1", () => {
    const inputs = [sent("node-a", 1, 1), sent("node-b", 10, 2), sent("node-c", -4, 5)];
    const [range, ...rest] = aggregate(inputs);
    expect(rest).toEqual([]);
    expect(range).toMatchObject({ dtype: "float32", blockStart: 0, blockEnd: 7, weight: 8, participants: ["node-a", "node-b", "node-c"] });
    const r = range as Contribution;
    expect(r.k.shape).toEqual(SHAPE);
    expect(r.v.shape).toEqual(SHAPE);
    expect(r.k.data).toBeInstanceOf(Float32Array);
    for (let i = 0; i < N; i++) {
      // (1·a + 2·b + 5·c) / 8 with a, b, c the seeds' ramps.
      const k = (1 * (1 + i * 0.125) + 2 * (10 + i * 0.125) + 5 * (-4 + i * 0.125)) / 8;
      const v = (1 * (2 - i * 0.25) + 2 * (20 - i * 0.25) + 5 * (-8 - i * 0.25)) / 8;
      expect(r.k.data[i]).toBeCloseTo(k, 5);
      expect(r.v.data[i]).toBeCloseTo(v, 5);
    }
  });

  it("gives the same answer whatever the weights' scale", () => {
    const a = aggregate([sent("a", 1, 1), sent("b", 3, 3)])[0] as Contribution;
    const b = aggregate([sent("a", 1, 0.25), sent("b", 3, 0.75)])[0] as Contribution;
    expect(Array.from(a.k.data)).toEqual(Array.from(b.k.data));
    expect(a.k.data[0]).toBeCloseTo(0.25 * 1 + 0.75 * 3, 6);
  });

  it("lets a participant with weight 0 take part without counting", () => {
    const r = aggregate([sent("a", 1, 0), sent("b", 3, 2)])[0] as Contribution;
    expect(Array.from(r.v.data)).toEqual(Array.from(sent("b", 3, 1).contribution.v.data));
  });

  it("aggregates each block range on its own, in block order", () => {
    const ranges = aggregate([
      sent("a", 1, 1, { blockStart: 8, blockEnd: 15 }),
      sent("a", 2, 1, { blockStart: 0, blockEnd: 7 }),
      sent("b", 5, 3, { blockStart: 0, blockEnd: 7 }),
      sent("b", 9, 3, { blockStart: 8, blockEnd: 15 }),
    ]);
    expect(ranges.map((r) => [r.blockStart, r.blockEnd])).toEqual([[0, 7], [8, 15]]);
    expect(ranges[0]?.k.data[0]).toBeCloseTo((2 + 3 * 5) / 4, 6);
    expect(ranges[1]?.k.data[0]).toBeCloseTo((1 + 3 * 9) / 4, 6);
  });

  it("answers float16 when every input was float16, float32 when they were mixed, and encodes in the same format", () => {
    const halves = aggregate([sent("a", 1, 1, { dtype: "float16" }), sent("b", 3, 1, { dtype: "float16" })])[0] as Contribution;
    expect(halves.dtype).toBe("float16");
    expect(halves.k.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(tensorToFloat32(halves.k)).slice(0, 3)).toEqual([2, 2.125, 2.25]);
    const mixed = aggregate([sent("a", 1, 1, { dtype: "float16" }), sent("b", 3, 1)])[0] as Contribution;
    expect(mixed.dtype).toBe("float32");
    expect(Array.from(mixed.k.data).slice(0, 3)).toEqual([2, 2.125, 2.25]);
    // The answer travels back as a contribution message.
    const back = decodeContribution(encodeContribution(halves));
    expect(back).toMatchObject({ dtype: "float16", blockStart: 0, blockEnd: 7, weight: 2 });
    expect(Array.from(back.v.data)).toEqual(Array.from(halves.v.data));
  });

  it("averages tensors larger than one accumulator chunk element by element, for both dtypes", () => {
    const n = 2 * 32 * 1024 + 5;
    for (const dtype of ["float32", "float16"] as const) {
      const inputs = [sent("a", 1, 1, { dtype, kShape: [n], vShape: [5, n] }), sent("b", 2, 3, { dtype, kShape: [n], vShape: [5, n] })];
      const r = aggregate(inputs)[0] as Contribution;
      expect(r.dtype).toBe(dtype);
      for (const name of ["k", "v"] as const) {
        const a = tensorToFloat32(inputs[0]?.contribution[name] as Contribution["k"]);
        const b = tensorToFloat32(inputs[1]?.contribution[name] as Contribution["k"]);
        const got = tensorToFloat32(r[name]);
        expect(got.length).toBe(a.length);
        const want = (i: number) => (dtype === "float16" ? float16BitsToFloat32(float32ToFloat16Bits(0.25 * (a[i] as number) + 0.75 * (b[i] as number))) : Math.fround(0.25 * (a[i] as number) + 0.75 * (b[i] as number)));
        for (let i = 0; i < got.length; i++) if (got[i] !== want(i)) expect(`${name}[${i}] = ${got[i]}`).toBe(`${name}[${i}] = ${want(i)}`);
      }
    }
  });

  it("keeps float64 sums: many small contributions do not drift", () => {
    const inputs = Array.from({ length: 50 }, (_, i) => sent(`n${i}`, 0.1, 1));
    const r = aggregate(inputs)[0] as Contribution;
    expect(r.k.data[0]).toBe(Math.fround(0.1));
  });
});

describe("fedattn aggregation: refusals", () => {
  it("refuses an empty set", () => {
    expect(expectCode(() => aggregate([]), "no_contributions").message).toBe("no contributions to aggregate");
  });

  it("refuses mismatched shapes, naming the participant", () => {
    const e = expectCode(() => aggregate([sent("node-a", 1, 1), sent("node-b", 1, 1), sent("node-c", 1, 1, { kShape: [2, 3, 5] })]), "shape_mismatch");
    expect(e.participant).toBe("node-c");
    expect(e.message).toBe("participant node-c sent K of shape [2, 3, 5] for blocks 0-7, but node-a sent [2, 3, 4]");
    const v = expectCode(() => aggregate([sent("node-a", 1, 1), sent("node-b", 1, 1, { vShape: [4, 3, 2] })]), "shape_mismatch");
    expect(v.participant).toBe("node-b");
    expect(v.message).toMatch(/sent V of shape \[4, 3, 2\]/);
  });

  it("refuses a block range not every participant sent, naming the range and who is missing it", () => {
    const e = expectCode(
      () => aggregate([sent("node-a", 1, 1), sent("node-b", 1, 1), sent("node-a", 1, 1, { blockStart: 8, blockEnd: 15 }), sent("node-c", 1, 1)]),
      "unmatched_block_range",
    );
    expect(e.blockRange).toBe("8-15");
    expect(e.message).toBe("blocks 8-15 were sent by node-a but not by node-b, node-c; every participant must send the same block ranges");
    expectCode(() => aggregate([sent("a", 1, 1, { blockStart: 0, blockEnd: 7 }), sent("b", 1, 1, { blockStart: 0, blockEnd: 8 })]), "unmatched_block_range");
  });

  it("refuses the same block range twice from one participant", () => {
    const e = expectCode(() => aggregate([sent("a", 1, 1), sent("b", 1, 1), sent("a", 2, 1)]), "duplicate_contribution");
    expect(e.participant).toBe("a");
  });

  it("refuses negative, non-finite and all-zero weights", () => {
    // Decoding already refuses these; aggregate checks again for contributions built in memory.
    const withWeight = (pc: ParticipantContribution, weight: number): ParticipantContribution => ({ ...pc, contribution: { ...pc.contribution, weight } });
    for (const w of [-1, NaN, Infinity]) {
      const e = expectCode(() => aggregate([sent("a", 1, 1), withWeight(sent("b", 1, 1), w)]), "bad_weight");
      expect(e.participant).toBe("b");
    }
    expect(expectCode(() => aggregate([sent("a", 1, 0), sent("b", 1, 0)]), "bad_weight").message).toBe("the weights for blocks 0-7 sum to 0; they must sum to a finite number > 0");
    expectCode(() => aggregate([withWeight(sent("a", 1, 1), Number.MAX_VALUE), withWeight(sent("b", 1, 1), Number.MAX_VALUE)]), "bad_weight");
  });
});
