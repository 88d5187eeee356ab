// Byte readers shared by the container readers: bounds-safe (a read past the end is 0 or false,
// never an exception), on a plain Uint8Array so they run in workerd and in Node alike.

/** The byte at i; 0 past either end, so a read never throws. */
export function u8(b: Uint8Array, i: number): number {
  return b[i] ?? 0;
}
/** The big-endian unsigned 16-bit integer at i. */
export function u16be(b: Uint8Array, i: number): number {
  return (u8(b, i) << 8) | u8(b, i + 1);
}
/** The big-endian unsigned 24-bit integer at i. */
export function u24be(b: Uint8Array, i: number): number {
  return (u8(b, i) << 16) | (u8(b, i + 1) << 8) | u8(b, i + 2);
}
/** The big-endian unsigned 32-bit integer at i. */
export function u32be(b: Uint8Array, i: number): number {
  return u8(b, i) * 0x1000000 + u24be(b, i + 1);
}
/** The big-endian unsigned 64-bit integer at i (exact only up to 2^53). */
export function u64be(b: Uint8Array, i: number): number {
  return u32be(b, i) * 0x100000000 + u32be(b, i + 4);
}
/** The little-endian unsigned 16-bit integer at i. */
export function u16le(b: Uint8Array, i: number): number {
  return u8(b, i) | (u8(b, i + 1) << 8);
}
/** The little-endian unsigned 32-bit integer at i. */
export function u32le(b: Uint8Array, i: number): number {
  return u16le(b, i) + u16le(b, i + 2) * 0x10000;
}
/** Whether the bytes at i spell s (false when they run past either end). */
export function ascii(b: Uint8Array, i: number, s: string): boolean {
  if (i < 0 || i + s.length > b.length) return false;
  for (let k = 0; k < s.length; k++) if (b[i + k] !== s.charCodeAt(k)) return false;
  return true;
}
/** A four-character code as the big-endian 32-bit integer its bytes read. */
export function fourcc(s: string): number {
  return ((s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3)) >>> 0;
}

/** The first q >= from where the 4 bytes read `value` (big-endian); -1 if none. */
export function find4(b: Uint8Array, from: number, value: number): number {
  const first = value >>> 24;
  for (let q = from; q + 4 <= b.length; q++) if (b[q] === first && u32be(b, q) === value) return q;
  return -1;
}

/** ceil(units / perSecond) in ms, or null when either is not a sane integer or the result is absurd. */
export function toMs(units: number, perSecond: number): number | null {
  if (!Number.isSafeInteger(units) || units < 0 || !Number.isSafeInteger(perSecond) || perSecond <= 0) return null;
  const den = BigInt(perSecond);
  const ms = (BigInt(units) * 1000n + den - 1n) / den;
  return ms <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(ms) : null;
}

/** ms from a sample count, where nothing decodable (0) means no honest duration. */
export function positiveMs(units: number, perSecond: number): number | null {
  return units > 0 ? toMs(units, perSecond) : null;
}
