/**
 * The little of the GGUF format (ggml's model file, docs/gguf.md in llama.cpp) needed to make a tiny
 * test model: read the key-value metadata of a vocabulary-only file, and write a file of metadata
 * and float32 tensors. Little-endian throughout; version 3; tensor data aligned to 32 bytes.
 */
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";

/** GGUF metadata value types. */
const T = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;
const FIXED: Record<number, number> = { [T.U8]: 1, [T.I8]: 1, [T.U16]: 2, [T.I16]: 2, [T.U32]: 4, [T.I32]: 4, [T.F32]: 4, [T.BOOL]: 1, [T.U64]: 8, [T.I64]: 8, [T.F64]: 8 };
const ALIGNMENT = 32;
const GGML_TYPE_F32 = 0;

/** One metadata entry, its value kept as the encoded bytes (type and value) so it is copied exactly. */
export interface GgufEntry {
  key: string;
  /** The encoded value: its u32 type, then the value. */
  raw: Uint8Array;
}

/** Reads the metadata of a GGUF file (its tensors, if any, are not read). */
export function readGgufMetadata(path: string): GgufEntry[] {
  const buf = readFileSync(path);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.toString("latin1", 0, 4) !== "GGUF") throw new Error(`${path} is not a GGUF file`);
  let at = 4;
  const version = view.getUint32(at, true);
  if (version < 2) throw new Error(`${path}: GGUF version ${version} is not supported`);
  at += 4 + 8; // version, tensor count
  const kvCount = Number(view.getBigUint64(at, true));
  at += 8;
  const string = (): string => {
    const len = Number(view.getBigUint64(at, true));
    const s = buf.toString("utf8", at + 8, at + 8 + len);
    at += 8 + len;
    return s;
  };
  const skipValue = (type: number): void => {
    if (type === T.STRING) {
      at += 8 + Number(view.getBigUint64(at, true));
      return;
    }
    if (type === T.ARRAY) {
      const inner = view.getUint32(at, true);
      const n = Number(view.getBigUint64(at + 4, true));
      at += 12;
      const size = FIXED[inner];
      if (size !== undefined) at += size * n;
      else for (let i = 0; i < n; i++) skipValue(inner);
      return;
    }
    const size = FIXED[type];
    if (size === undefined) throw new Error(`${path}: unknown GGUF value type ${type}`);
    at += size;
  };
  const entries: GgufEntry[] = [];
  for (let i = 0; i < kvCount; i++) {
    const key = string();
    const start = at;
    const type = view.getUint32(at, true);
    at += 4;
    skipValue(type);
    entries.push({ key, raw: buf.subarray(start, at) });
  }
  return entries;
}

function u32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value, true);
  return b;
}
function u64(value: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(value), true);
  return b;
}
function str(value: string): Uint8Array {
  const bytes = Buffer.from(value, "utf8");
  return Buffer.concat([u64(bytes.length), bytes]);
}

/** Encoded metadata values, for `writeGguf`. */
export const value = {
  u32: (v: number): Uint8Array => Buffer.concat([u32(T.U32), u32(v)]),
  f32: (v: number): Uint8Array => {
    const b = new Uint8Array(8);
    const d = new DataView(b.buffer);
    d.setUint32(0, T.F32, true);
    d.setFloat32(4, v, true);
    return b;
  },
  string: (v: string): Uint8Array => Buffer.concat([u32(T.STRING), str(v)]),
};

/** A float32 tensor: its name, its shape in ggml's order (ne[0] first, the fastest-varying), and a filler. */
export interface TensorSpec {
  name: string;
  shape: number[];
  fill(count: number): Float32Array;
}

/** Writes a GGUF v3 file of `entries` and float32 `tensors`, streaming the tensors' data. */
export function writeGguf(path: string, entries: GgufEntry[], tensors: TensorSpec[]): void {
  const parts: Uint8Array[] = [Buffer.from("GGUF", "latin1"), u32(3), u64(tensors.length), u64(entries.length)];
  for (const e of entries) parts.push(str(e.key), e.raw);
  let offset = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    parts.push(str(t.name), u32(t.shape.length), ...t.shape.map(u64), u32(GGML_TYPE_F32), u64(offset));
    sizes.push(count);
    offset += Math.ceil((count * 4) / ALIGNMENT) * ALIGNMENT;
  }
  const header = Buffer.concat(parts);
  const fd = openSync(path, "w");
  try {
    writeSync(fd, header);
    writeSync(fd, new Uint8Array((ALIGNMENT - (header.length % ALIGNMENT)) % ALIGNMENT));
    tensors.forEach((t, i) => {
      const count = sizes[i] ?? 0;
      const data = t.fill(count);
      writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      writeSync(fd, new Uint8Array((ALIGNMENT - ((count * 4) % ALIGNMENT)) % ALIGNMENT));
    });
  } finally {
    closeSync(fd);
  }
}
