import { describe, expect, it } from "vitest";
import {
  decodeContribution,
  encodeContribution,
  float16ArrayToFloat32,
  float16BitsToFloat32,
  float32ArrayToFloat16,
  float32ToFloat16Bits,
  tensorToFloat32,
  TensorFormatError,
  type ContributionInput,
} from "../../schema/contracts/fedattn-tensors.ts";

const ramp = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);
const product = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

function input(shape: number[], dtype: "float32" | "float16" = "float32", extra: Partial<ContributionInput> = {}): ContributionInput {
  return { blockStart: 8, blockEnd: 15, weight: 0.75, dtype, k: { shape, data: ramp(product(shape), 0.5) }, v: { shape, data: ramp(product(shape), -0.25) }, ...extra };
}

/** The TensorFormatError `fn` throws (fails the test when it throws anything else or nothing). */
function formatError(fn: () => unknown): TensorFormatError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TensorFormatError);
    return err as TensorFormatError;
  }
  throw new Error("expected a TensorFormatError, nothing was thrown");
}

describe("fedattn tensor format: round trips", () => {
  for (const shape of [[1], [7], [3, 5], [2, 4, 16], [2, 3, 4, 5]]) {
    it(`returns the same float32 K and V for shape [${shape.join(", ")}]`, () => {
      const msg = encodeContribution(input(shape));
      const ranks = 2 * (1 + shape.length);
      expect(msg.byteLength).toBe(24 + 4 * ranks + 2 * 4 * product(shape));
      const c = decodeContribution(msg);
      expect(c).toMatchObject({ dtype: "float32", blockStart: 8, blockEnd: 15, weight: 0.75 });
      expect(c.k.shape).toEqual(shape);
      expect(c.v.shape).toEqual(shape);
      expect(c.k.data).toBeInstanceOf(Float32Array);
      expect(Array.from(c.k.data)).toEqual(Array.from(ramp(product(shape), 0.5)));
      expect(Array.from(c.v.data)).toEqual(Array.from(ramp(product(shape), -0.25)));
    });

    it(`returns the same float16 K and V for shape [${shape.join(", ")}] (values exact in half precision)`, () => {
      const c = decodeContribution(encodeContribution(input(shape, "float16")));
      expect(c.dtype).toBe("float16");
      expect(c.k.data).toBeInstanceOf(Uint16Array);
      expect(Array.from(tensorToFloat32(c.k))).toEqual(Array.from(ramp(product(shape), 0.5)));
      expect(Array.from(tensorToFloat32(c.v))).toEqual(Array.from(ramp(product(shape), -0.25)));
    });
  }

  it("writes the documented header bytes", () => {
    const msg = encodeContribution({ blockStart: 0, blockEnd: 7, weight: 1, dtype: "float16", k: { shape: [2], data: new Uint16Array([0x3c00, 0xc000]) }, v: { shape: [1], data: new Uint16Array([0x7bff]) } });
    expect(Array.from(msg)).toEqual([
      0x46, 0x41, 0x54, 0x4e, 1, 0, 2, 2, // "FATN", version 1, float16, 2 tensors
      0, 0, 0, 0, 7, 0, 0, 0, // blocks 0..7
      0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // weight 1.0
      1, 0, 0, 0, 2, 0, 0, 0, // K: rank 1, [2]
      1, 0, 0, 0, 1, 0, 0, 0, // V: rank 1, [1]
      0x00, 0x3c, 0x00, 0xc0, // K = [1, -2]
      0xff, 0x7b, // V = [65504]
    ]);
  });

  it("decodes without copying the tensor data when the input is aligned, and copies when it is not", () => {
    const msg = encodeContribution(input([4, 4]));
    const aligned = decodeContribution(msg);
    expect(aligned.k.data.buffer).toBe(msg.buffer);
    const shifted = new Uint8Array(msg.byteLength + 1);
    shifted.set(msg, 1);
    const c = decodeContribution(shifted.subarray(1));
    expect(c.k.data.buffer).not.toBe(shifted.buffer);
    expect(Array.from(c.k.data)).toEqual(Array.from(aligned.k.data));
    expect(Array.from(c.v.data)).toEqual(Array.from(aligned.v.data));
  });

  it("lets K and V have different shapes", () => {
    const c = decodeContribution(encodeContribution({ ...input([2, 3]), v: { shape: [3, 2, 1], data: ramp(6) } }));
    expect(c.k.shape).toEqual([2, 3]);
    expect(c.v.shape).toEqual([3, 2, 1]);
    expect(Array.from(c.v.data)).toEqual(Array.from(ramp(6)));
  });

  it("defaults the weight to 1 and accepts block_end equal to block_start", () => {
    const { weight: _w, ...rest } = input([2]);
    const c = decodeContribution(encodeContribution({ ...rest, blockStart: 3, blockEnd: 3 }));
    expect(c.weight).toBe(1);
    expect([c.blockStart, c.blockEnd]).toEqual([3, 3]);
  });
});

describe("fedattn float16 conversion", () => {
  const known: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff], // largest finite half
    [2 ** -14, 0x0400], // smallest normal (6.103515625e-5)
    [6.1e-5, 0x03ff], // just below it: the largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [65520, 0x7c00], // halfway between 65504 and 2^16: ties to even, i.e. overflows to Infinity
    [1e6, 0x7c00],
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10: to even (1)
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 1+2^-10 and 1+2^-9: to even (1+2^-9)
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie: up
    [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: to even (0)
    [3 * 2 ** -25, 0x0002], // tie between subnormals 1 and 2: to even (2)
    [2 ** -25 + 2 ** -35, 0x0001], // just above the tie: up
    [2 ** -26, 0x0000],
  ];
  for (const [value, bits] of known) {
    it(`encodes ${Object.is(value, -0) ? "-0" : value} as 0x${bits.toString(16).padStart(4, "0")}`, () => {
      expect(float32ToFloat16Bits(value)).toBe(bits);
    });
  }

  it("decodes the known bit patterns back to their values (-0 keeps its sign)", () => {
    expect(Object.is(float16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(float16BitsToFloat32(0x7bff)).toBe(65504);
    expect(float16BitsToFloat32(0x0400)).toBe(2 ** -14);
    expect(float16BitsToFloat32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0xfc00)).toBe(-Infinity);
    expect(float16BitsToFloat32(0x3555)).toBeCloseTo(1 / 3, 3);
  });

  it("keeps NaN a NaN both ways", () => {
    const bits = float32ToFloat16Bits(NaN);
    expect(bits & 0x7c00).toBe(0x7c00);
    expect(bits & 0x3ff).not.toBe(0);
    expect(float16BitsToFloat32(bits)).toBeNaN();
    expect(float16BitsToFloat32(0x7c01)).toBeNaN();
    expect(float16BitsToFloat32(0xfe00)).toBeNaN();
  });

  it("round-trips every one of the 65536 half values bit for bit (NaNs stay NaN)", () => {
    const all = Uint16Array.from({ length: 0x10000 }, (_, i) => i);
    const back = float32ArrayToFloat16(float16ArrayToFloat32(all));
    for (let i = 0; i < 0x10000; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN) expect(Number.isNaN(float16BitsToFloat32(back[i] as number))).toBe(true);
      else if (back[i] !== i) expect(`0x${i.toString(16)} -> 0x${(back[i] as number).toString(16)}`).toBe("round trip");
    }
  });

  // Node 24 has Math.f16round (the TC39 Float16Array proposal): an independent reference.
  const f16round = (Math as unknown as { f16round?: (x: number) => number }).f16round;
  it.skipIf(f16round === undefined)("rounds 200000 random float32 values exactly as Math.f16round does", () => {
    const ref = f16round as (x: number) => number;
    const bits = new Uint32Array(200_000);
    let seed = 12345;
    for (let i = 0; i < bits.length; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      // Exponents concentrated around the half range, so subnormals, normals and overflow all occur.
      const exp = 127 - 30 + (seed % 50);
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      bits[i] = ((seed & 1) << 31) | (exp << 23) | (seed >>> 9);
    }
    const values = new Float32Array(bits.buffer);
    for (const v of values) {
      const mine = float16BitsToFloat32(float32ToFloat16Bits(v));
      if (!Object.is(mine, ref(v))) expect(`${v} -> ${mine}`).toBe(`${v} -> ${ref(v)}`);
    }
  });
});

describe("fedattn tensor format: malformed input is refused by name", () => {
  const good = encodeContribution(input([2, 3]));
  const patched = (at: number, write: (v: DataView) => void, bytes: Uint8Array = good): Uint8Array => {
    const copy = bytes.slice();
    write(new DataView(copy.buffer, at));
    return copy;
  };

  it("refuses a truncated header", () => {
    for (const n of [0, 4, 23]) expect(formatError(() => decodeContribution(good.subarray(0, n))).field).toBe("header");
  });

  it("refuses a wrong magic", () => {
    const e = formatError(() => decodeContribution(patched(0, (v) => v.setUint8(0, 0x47))));
    expect(e.field).toBe("magic");
    expect(e.message).toMatch(/FATN/);
  });

  it("refuses an unknown version and dtype", () => {
    expect(formatError(() => decodeContribution(patched(4, (v) => v.setUint16(0, 2, true)))).message).toMatch(/^version: unsupported version 2/);
    expect(formatError(() => decodeContribution(patched(6, (v) => v.setUint8(0, 3)))).field).toBe("dtype");
    expect(formatError(() => decodeContribution(patched(7, (v) => v.setUint8(0, 3)))).field).toBe("tensor_count");
  });

  it("refuses block_end before block_start, and a bad weight", () => {
    expect(formatError(() => decodeContribution(patched(12, (v) => v.setUint32(0, 7, true)))).message).toBe("block_end: 7 is before block_start 8");
    expect(formatError(() => encodeContribution(input([2], "float32", { blockStart: 5, blockEnd: 4 }))).field).toBe("block_end");
    for (const w of [NaN, -1, Infinity]) {
      expect(formatError(() => decodeContribution(patched(16, (v) => v.setFloat64(0, w, true)))).field).toBe("weight");
      expect(formatError(() => encodeContribution(input([2], "float32", { weight: w }))).field).toBe("weight");
    }
  });

  it("refuses rank 0 and rank 5", () => {
    expect(formatError(() => decodeContribution(patched(24, (v) => v.setUint32(0, 0, true)))).message).toBe("k.rank: must be 1..4, got 0");
    expect(formatError(() => decodeContribution(patched(24, (v) => v.setUint32(0, 5, true)))).field).toBe("k.rank");
    // V's rank sits after K's rank and its 2 dims.
    expect(formatError(() => decodeContribution(patched(36, (v) => v.setUint32(0, 5, true)))).field).toBe("v.rank");
    expect(formatError(() => encodeContribution(input([]))).field).toBe("k.rank");
    expect(formatError(() => encodeContribution(input([1, 1, 1, 1, 1]))).field).toBe("k.rank");
  });

  it("refuses a zero dimension", () => {
    expect(formatError(() => decodeContribution(patched(32, (v) => v.setUint32(0, 0, true)))).message).toBe("k.shape[1]: must be an integer in 1..4294967295, got 0");
    expect(formatError(() => encodeContribution({ ...input([2]), v: { shape: [0], data: new Float32Array(0) } })).field).toBe("v.shape[0]");
  });

  it("refuses data shorter or longer than the shapes say", () => {
    expect(formatError(() => decodeContribution(good.subarray(0, good.byteLength - 1))).message).toBe("data: 47 data bytes, the shapes say 48 (too short)");
    const longer = new Uint8Array(good.byteLength + 4);
    longer.set(good);
    expect(formatError(() => decodeContribution(longer)).message).toBe("data: 52 data bytes, the shapes say 48 (too long)");
    expect(formatError(() => encodeContribution({ ...input([2, 3]), k: { shape: [2, 3], data: ramp(5) } })).field).toBe("k.data");
    // Truncated in the middle of the dims: refused before reading them.
    expect(formatError(() => decodeContribution(good.subarray(0, 30))).field).toBe("k.shape");
    expect(formatError(() => decodeContribution(good.subarray(0, 26))).field).toBe("k.rank");
  });

  it("refuses a message or a shape over maxBytes", () => {
    expect(formatError(() => decodeContribution(good, { maxBytes: good.byteLength - 1 })).field).toBe("size");
    expect(decodeContribution(good, { maxBytes: good.byteLength }).k.shape).toEqual([2, 3]);
    // A header that claims 2^32-1 × 2^32-1 elements in a tiny message: refused without allocating.
    const huge = patched(28, (v) => {
      v.setUint32(0, 0xffffffff, true);
      v.setUint32(4, 0xffffffff, true);
    });
    expect(formatError(() => decodeContribution(huge)).field).toBe("k.shape");
    expect(formatError(() => encodeContribution(input([64, 64]), { maxBytes: 1024 })).field).toBe("k.shape");
  });

  it("refuses a Uint16Array for a float32 message", () => {
    expect(formatError(() => encodeContribution({ ...input([2]), k: { shape: [2], data: new Uint16Array(2) } })).message).toMatch(/^k\.data: a float32 message takes a Float32Array/);
  });

  it("never reads out of bounds: every prefix of a valid message is refused with a TensorFormatError", () => {
    for (let n = 0; n < good.byteLength; n++) formatError(() => decodeContribution(good.subarray(0, n)));
  });
});
