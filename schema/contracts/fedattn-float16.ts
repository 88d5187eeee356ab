/**
 * IEEE 754 binary16 ("half", float16) <-> float32 conversion for the federated-attention tensor
 * format (fedattn-tensors.ts). Workers' runtime and the TypeScript libs this project targets do not
 * all have `Float16Array`/`Math.f16round` yet, so the bits are converted by hand.
 *
 * Encoding rounds to nearest, ties to even (the IEEE default), including into and out of the
 * subnormal range; overflow becomes ±Infinity, NaN stays a (quiet) NaN with its sign, -0 stays -0.
 * The input is a float32 (a JS number is first rounded to float32 with Math.fround), which is what
 * the tensors hold.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float16 bit pattern nearest to `value` (as a float32), ties to even. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    // Infinity keeps its sign; NaN keeps its top payload bits and is forced quiet so it stays a NaN.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: m * 2^-24. Values below 2^-25 round to zero; exactly 2^-25 is a tie to 0.
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    let half = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half; // a carry out of the largest subnormal lands on the smallest normal, as it should
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++; // a carry may reach Infinity: correct
  return sign | half;
}

/** The value of a float16 bit pattern (exact: every float16 is a float32). */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

let table: Float32Array | null = null;

/** All 65536 float16 values as float32, built on first use (256 KiB): bulk decoding is a lookup. */
export function float16Table(): Float32Array {
  if (table === null) {
    const t = new Float32Array(0x10000);
    for (let i = 0; i < 0x10000; i++) t[i] = float16BitsToFloat32(i);
    table = t;
  }
  return table;
}

/** float16 bits -> a new Float32Array. */
export function float16ArrayToFloat32(bits: Uint16Array): Float32Array {
  const t = float16Table();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i] as number] as number;
  return out;
}

/** float32 values -> a new Uint16Array of float16 bits (rounded to nearest, ties to even). */
export function float32ArrayToFloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i] as number);
  return out;
}
