// FLAC. STREAMINFO (which must be the first metadata block) gives the sample rate and a total sample
// count, but that total is only a claim (0 = unknown), so the audio frames are counted as well and the
// larger figure wins. A frame counts when its header is valid and consistent with STREAMINFO (channels,
// bits per sample, sample rate, block size within any stated maximum) and its CRC-8 matches.

import { u8, u16be, u24be, u32be, positiveMs } from "./bytes.ts";

/** The first q >= from where a FLAC frame header may start (0xFFF8 or 0xFFF9); -1 if none. */
function flacSync(b: Uint8Array, from: number): number {
  // Plain loops: indexOf costs a native call per hit, and hostile input can be all 0xFF.
  for (let q = from; q + 1 < b.length; q++) if (b[q] === 0xff && ((b[q + 1] ?? 0) & 0xfe) === 0xf8) return q;
  return -1;
}

const FLAC_RATES = [0, 88200, 176400, 192000, 8000, 16000, 22050, 24000, 32000, 44100, 48000, 96000];
const FLAC_BITS = [0, 8, 12, 0, 16, 20, 24, 32];
const CRC8 = new Uint8Array(256).map((_, i) => {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 0x80 ? ((c << 1) ^ 0x07) & 0xff : (c << 1) & 0xff;
  return c;
});

interface FlacInfo {
  rate: number;
  channels: number;
  bits: number;
  maxBlock: number;
}

/** The block size of a frame header at q (sync, fields consistent with STREAMINFO, CRC-8), or 0. */
function flacFrameHeader(b: Uint8Array, q: number, info: FlacInfo): number {
  const b1 = u8(b, q + 1);
  if ((b1 & 0xfe) !== 0xf8) return 0;
  const b2 = u8(b, q + 2);
  const b3 = u8(b, q + 3);
  const bsCode = b2 >> 4;
  const srCode = b2 & 15;
  const ch = b3 >> 4;
  const ss = (b3 >> 1) & 7;
  if (bsCode === 0 || srCode === 15 || ch > 10 || ss === 3 || b3 & 1) return 0;
  if (ch <= 7 ? ch + 1 !== info.channels : info.channels !== 2) return 0;
  if (ss !== 0 && FLAC_BITS[ss] !== info.bits) return 0;
  // The frame or sample number, UTF-8 coded (up to 6 bytes, 7 for variable block sizes).
  const lead = u8(b, q + 4);
  const extra = lead < 0x80 ? 0 : lead < 0xc0 ? -1 : lead < 0xe0 ? 1 : lead < 0xf0 ? 2 : lead < 0xf8 ? 3 : lead < 0xfc ? 4 : lead < 0xfe ? 5 : lead === 0xfe ? 6 : -1;
  if (extra < 0 || (extra === 6 && !(b1 & 1))) return 0;
  for (let k = 1; k <= extra; k++) if ((u8(b, q + 4 + k) & 0xc0) !== 0x80) return 0;
  let p = q + 5 + extra;
  let block: number;
  if (bsCode === 1) block = 192;
  else if (bsCode <= 5) block = 576 << (bsCode - 2);
  else if (bsCode === 6) block = u8(b, p++) + 1;
  else if (bsCode === 7) {
    block = u16be(b, p) + 1;
    p += 2;
  } else block = 256 << (bsCode - 8);
  let rate = info.rate;
  if (srCode >= 1 && srCode <= 11) rate = FLAC_RATES[srCode] ?? 0;
  else if (srCode === 12) rate = u8(b, p++) * 1000;
  else if (srCode === 13 || srCode === 14) {
    rate = u16be(b, p) * (srCode === 14 ? 10 : 1);
    p += 2;
  }
  if (rate !== info.rate || (info.maxBlock >= 16 && block > info.maxBlock) || p >= b.length) return 0;
  let crc = 0;
  for (let k = q; k < p; k++) crc = CRC8[crc ^ u8(b, k)] ?? 0;
  return crc === u8(b, p) ? block : 0;
}

/** The duration in ms of a FLAC stream whose "fLaC" marker is at start (after any ID3v2 tag), or null. */
export function flac(b: Uint8Array, start: number): number | null {
  const n = b.length;
  const si = start + 8;
  const head = u8(b, start + 4);
  if ((head & 0x7f) !== 0 || u24be(b, start + 5) < 34 || si + 34 > n) return null; // STREAMINFO comes first
  const info: FlacInfo = {
    rate: (u8(b, si + 10) << 12) | (u8(b, si + 11) << 4) | (u8(b, si + 12) >> 4),
    channels: ((u8(b, si + 12) >> 1) & 7) + 1,
    bits: (((u8(b, si + 12) & 1) << 4) | (u8(b, si + 13) >> 4)) + 1,
    maxBlock: u16be(b, si + 2),
  };
  if (info.rate === 0) return null;
  const total = (u8(b, si + 13) & 15) * 0x100000000 + u32be(b, si + 14);
  let p = si + u24be(b, start + 5);
  let last = (head & 0x80) !== 0;
  while (!last && p + 4 <= n) {
    last = (u8(b, p) & 0x80) !== 0;
    p += 4 + u24be(b, p + 1);
  }
  // STREAMINFO's total is a claim (0 = unknown): count the frames too. Frames are not length-
  // prefixed, so every position whose bytes form a valid header (with its CRC-8 and consistent with
  // STREAMINFO) counts; a chance match inside compressed audio is rare enough (about 1e-11 a byte)
  // to be ignored, and it can only make the figure longer.
  let framed = 0;
  for (let q = flacSync(b, p); q >= 0 && q + 6 <= n; q = flacSync(b, q + 1)) framed += flacFrameHeader(b, q, info);
  return positiveMs(Math.max(total, framed), info.rate);
}
