/**
 * The binary format of a federated-attention contribution: one participant's K and V matrices for
 * one block range, and the aggregate that comes back (docs/fedattn.md, "Tensor format").
 *
 * Little-endian throughout:
 *   0  magic "FATN" (4 bytes)      4  version u16 (= 1)     6  dtype u8 (1 float32, 2 float16)
 *   7  tensor count u8 (= 2)       8  block_start u32       12 block_end u32 (inclusive, >= start)
 *   16 weight f64 (finite, >= 0)   24 per tensor (K, then V): rank u32 (1..4), dims u32 × rank (> 0)
 *   then K's elements, then V's elements, row-major, nothing after them.
 * Every field before the data is 4-byte sized, so K's data starts on a multiple of 4 and V's right
 * after K's: each tensor is aligned to its element size without padding, and decoding hands out
 * typed-array views of the input rather than copies.
 */

import { float16ArrayToFloat32, float32ArrayToFloat16 } from "./fedattn-float16.ts";

export {
  float16ArrayToFloat32,
  float16BitsToFloat32,
  float32ArrayToFloat16,
  float32ToFloat16Bits,
} from "./fedattn-float16.ts";

/** "FATN" read as a little-endian u32. */
const MAGIC = 0x4e544146;
/** The format version this code writes and reads. */
export const FEDATTN_FORMAT_VERSION = 1;
/** The default cap on a whole message, header included. */
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
/** The highest rank a tensor may have (e.g. [heads, tokens, head_dim] or with a batch axis). */
export const MAX_RANK = 4;
/** The media type the gateway will use for these bodies. */
export const FEDATTN_MEDIA_TYPE = "application/vnd.switchyard.fedattn";

const HEADER_BYTES = 24;
const TENSOR_COUNT = 2;

/** Element type of both tensors of a message. */
export type Dtype = "float32" | "float16";
const DTYPE_CODE: Record<Dtype, number> = { float32: 1, float16: 2 };
const ELEMENT_BYTES: Record<Dtype, number> = { float32: 4, float16: 2 };

/** A tensor as it is decoded: float32 values, or float16 bit patterns (see tensorToFloat32). */
export type Tensor =
  | { dtype: "float32"; shape: number[]; data: Float32Array }
  | { dtype: "float16"; shape: number[]; data: Uint16Array };

/** A decoded contribution (or aggregate). */
export interface Contribution {
  dtype: Dtype;
  blockStart: number;
  blockEnd: number;
  weight: number;
  k: Tensor;
  v: Tensor;
}

/** What encodeContribution takes: float32 values, or (for float16) float16 bits or float32 values to round. */
export interface ContributionInput {
  blockStart: number;
  blockEnd: number;
  weight?: number;
  dtype: Dtype;
  k: { shape: readonly number[]; data: Float32Array | Uint16Array };
  v: { shape: readonly number[]; data: Float32Array | Uint16Array };
}

/** A malformed message or encode input; `field` names the part that is wrong (e.g. "magic", "k.shape"). */
export class TensorFormatError extends Error {
  override readonly name = "TensorFormatError";
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** The tensor's values as float32: the same array for float32, a converted copy for float16. */
export function tensorToFloat32(t: Tensor): Float32Array {
  return t.dtype === "float32" ? t.data : float16ArrayToFloat32(t.data);
}

function checkBlockRange(blockStart: number, blockEnd: number): void {
  for (const [field, n] of [["block_start", blockStart], ["block_end", blockEnd]] as const) {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new TensorFormatError(field, `must be an integer in 0..4294967295, got ${n}`);
  }
  if (blockEnd < blockStart) throw new TensorFormatError("block_end", `${blockEnd} is before block_start ${blockStart}`);
}

function checkWeight(weight: number): void {
  if (!Number.isFinite(weight) || weight < 0) throw new TensorFormatError("weight", `must be a finite number >= 0, got ${weight}`);
}

/** Element count of a shape, checked: rank 1..4, dims integers > 0, data within maxBytes. */
function elementCount(field: string, shape: readonly number[], elementBytes: number, maxBytes: number): number {
  if (shape.length < 1 || shape.length > MAX_RANK) throw new TensorFormatError(`${field}.rank`, `must be 1..${MAX_RANK}, got ${shape.length}`);
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i] as number;
    if (!Number.isInteger(d) || d < 1 || d > 0xffffffff) throw new TensorFormatError(`${field}.shape[${i}]`, `must be an integer in 1..4294967295, got ${d}`);
    n *= d;
    // Checked per dimension so the product stays an exact integer (well below 2^53).
    if (n * elementBytes > maxBytes) throw new TensorFormatError(`${field}.shape`, `[${shape.join(", ")}] needs more than the ${maxBytes}-byte limit`);
  }
  return n;
}

/** Encodes one contribution. Float32 data for a float16 message is rounded to nearest, ties to even. */
export function encodeContribution(input: ContributionInput, options: { maxBytes?: number } = {}): Uint8Array {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const { dtype } = input;
  const weight = input.weight ?? 1;
  if (DTYPE_CODE[dtype] === undefined) throw new TensorFormatError("dtype", `must be float32 or float16, got ${String(dtype)}`);
  checkBlockRange(input.blockStart, input.blockEnd);
  checkWeight(weight);
  const size = ELEMENT_BYTES[dtype];
  const tensors = [
    { name: "k", ...input.k },
    { name: "v", ...input.v },
  ];
  let offset = HEADER_BYTES;
  const counts: number[] = [];
  for (const t of tensors) {
    counts.push(elementCount(t.name, t.shape, size, maxBytes));
    offset += 4 * (1 + t.shape.length);
  }
  const dataStart = offset;
  let total = dataStart;
  tensors.forEach((t, i) => {
    const n = counts[i] as number;
    if (t.data.length !== n) throw new TensorFormatError(`${t.name}.data`, `has ${t.data.length} elements, shape [${t.shape.join(", ")}] says ${n}`);
    if (dtype === "float32" && !(t.data instanceof Float32Array)) throw new TensorFormatError(`${t.name}.data`, "a float32 message takes a Float32Array");
    total += n * size;
  });
  if (total > maxBytes) throw new TensorFormatError("size", `message would be ${total} bytes, over the ${maxBytes}-byte limit`);

  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint16(4, FEDATTN_FORMAT_VERSION, true);
  view.setUint8(6, DTYPE_CODE[dtype]);
  view.setUint8(7, TENSOR_COUNT);
  view.setUint32(8, input.blockStart, true);
  view.setUint32(12, input.blockEnd, true);
  view.setFloat64(16, weight, true);
  let p = HEADER_BYTES;
  for (const t of tensors) {
    view.setUint32(p, t.shape.length, true);
    p += 4;
    for (const d of t.shape) {
      view.setUint32(p, d, true);
      p += 4;
    }
  }
  for (const t of tensors) {
    const data = dtype === "float16" && t.data instanceof Float32Array ? float32ArrayToFloat16(t.data) : t.data;
    writeElements(out, p, data);
    p += data.byteLength;
  }
  return out;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function writeElements(out: Uint8Array, at: number, data: Float32Array | Uint16Array): void {
  if (LITTLE_ENDIAN_HOST) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    return;
  }
  const view = new DataView(out.buffer, out.byteOffset);
  if (data instanceof Float32Array) for (let i = 0; i < data.length; i++) view.setFloat32(at + 4 * i, data[i] as number, true);
  else for (let i = 0; i < data.length; i++) view.setUint16(at + 2 * i, data[i] as number, true);
}

/** A typed view of `count` elements at `at`; a copy only when the input is misaligned (or the host big-endian). */
function readElements(bytes: Uint8Array, at: number, count: number, dtype: Dtype): Float32Array | Uint16Array {
  const size = ELEMENT_BYTES[dtype];
  const absolute = bytes.byteOffset + at;
  if (LITTLE_ENDIAN_HOST && absolute % size === 0) {
    return dtype === "float32" ? new Float32Array(bytes.buffer, absolute, count) : new Uint16Array(bytes.buffer, absolute, count);
  }
  const view = new DataView(bytes.buffer, absolute, count * size);
  if (dtype === "float32") {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

/**
 * Decodes one message, checking every field before reading past it. The tensors are views of
 * `bytes` (keep it unchanged while they are in use). Throws TensorFormatError on anything malformed.
 */
export function decodeContribution(bytes: Uint8Array, options: { maxBytes?: number } = {}): Contribution {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  if (bytes.byteLength > maxBytes) throw new TensorFormatError("size", `message is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit`);
  if (bytes.byteLength < HEADER_BYTES) throw new TensorFormatError("header", `truncated: ${bytes.byteLength} bytes, the header alone is ${HEADER_BYTES}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new TensorFormatError("magic", "not a fedattn tensor message (expected \"FATN\")");
  const version = view.getUint16(4, true);
  if (version !== FEDATTN_FORMAT_VERSION) throw new TensorFormatError("version", `unsupported version ${version} (this reader knows ${FEDATTN_FORMAT_VERSION})`);
  const dtypeCode = view.getUint8(6);
  const dtype: Dtype | null = dtypeCode === 1 ? "float32" : dtypeCode === 2 ? "float16" : null;
  if (dtype === null) throw new TensorFormatError("dtype", `unknown dtype code ${dtypeCode} (1 float32, 2 float16)`);
  const tensorCount = view.getUint8(7);
  if (tensorCount !== TENSOR_COUNT) throw new TensorFormatError("tensor_count", `must be ${TENSOR_COUNT} (K and V), got ${tensorCount}`);
  const blockStart = view.getUint32(8, true);
  const blockEnd = view.getUint32(12, true);
  checkBlockRange(blockStart, blockEnd);
  const weight = view.getFloat64(16, true);
  checkWeight(weight);

  const size = ELEMENT_BYTES[dtype];
  let p = HEADER_BYTES;
  const shapes: number[][] = [];
  const counts: number[] = [];
  for (const name of ["k", "v"]) {
    if (p + 4 > bytes.byteLength) throw new TensorFormatError(`${name}.rank`, "truncated before the rank");
    const rank = view.getUint32(p, true);
    p += 4;
    if (rank < 1 || rank > MAX_RANK) throw new TensorFormatError(`${name}.rank`, `must be 1..${MAX_RANK}, got ${rank}`);
    if (p + 4 * rank > bytes.byteLength) throw new TensorFormatError(`${name}.shape`, `truncated: ${rank} dims do not fit`);
    const shape: number[] = [];
    for (let i = 0; i < rank; i++) shape.push(view.getUint32(p + 4 * i, true));
    p += 4 * rank;
    counts.push(elementCount(name, shape, size, maxBytes));
    shapes.push(shape);
  }
  const expected = p + ((counts[0] as number) + (counts[1] as number)) * size;
  if (bytes.byteLength !== expected) {
    const what = bytes.byteLength < expected ? "short" : "long";
    throw new TensorFormatError("data", `${bytes.byteLength - p} data bytes, the shapes say ${expected - p} (too ${what})`);
  }
  const tensors = shapes.map((shape, i) => {
    const data = readElements(bytes, p, counts[i] as number, dtype);
    p += (counts[i] as number) * size;
    // readElements returns the array type that matches dtype.
    return { dtype, shape, data } as Tensor;
  });
  return { dtype, blockStart, blockEnd, weight, k: tensors[0] as Tensor, v: tensors[1] as Tensor };
}
