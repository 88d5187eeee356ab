// WAV (RIFF), RF64 and BW64. The duration is the `data` chunk in whole sample frames over the `fmt `
// chunk's rate, for uncompressed audio only: PCM, float, A-law and mu-law, plain or as the subformat of
// WAVE_FORMAT_EXTENSIBLE; anything compressed is not read. The frame size is the one decoders use
// (channels x whole bytes per sample), not the header's blockAlign or byteRate. A data size of 0 or
// 0xFFFFFFFF (what streaming writers leave) runs to the end of the file, except that RF64/BW64 take
// the 64-bit size from ds64 in place of 0xFFFFFFFF; a size past the end counts only the bytes there.

import { u8, u16le, u32le, ascii, toMs } from "./bytes.ts";

const PCM = 1;
const FLOAT = 3;
const ALAW = 6;
const MULAW = 7;
const EXTENSIBLE = 0xfffe;
/** KSDATAFORMAT_SUBTYPE_* GUIDs are the format tag followed by these 14 bytes. */
const SUBFORMAT_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

/** Bytes per sample frame of an uncompressed `fmt ` chunk; null for compressed or malformed ones. */
function wavFrameBytes(b: Uint8Array, body: number, size: number): { rate: number; frameBytes: number } | null {
  if (size < 16 || body + 16 > b.length) return null;
  let tag = u16le(b, body);
  const channels = u16le(b, body + 2);
  const rate = u32le(b, body + 4);
  const bits = u16le(b, body + 14);
  if (tag === EXTENSIBLE) {
    if (size < 40 || body + 40 > b.length) return null;
    for (let k = 0; k < SUBFORMAT_TAIL.length; k++) if (u8(b, body + 26 + k) !== SUBFORMAT_TAIL[k]) return null;
    tag = u16le(b, body + 24);
  }
  const ok = tag === PCM ? bits >= 1 && bits <= 32 : tag === FLOAT ? bits === 32 || bits === 64 : (tag === ALAW || tag === MULAW) && bits === 8;
  if (!ok || channels === 0 || rate === 0) return null;
  // The frame size decoders use: the header's blockAlign and byteRate are not trusted.
  return { rate, frameBytes: channels * Math.ceil(bits / 8) };
}

/** The duration in ms of a RIFF/RF64/BW64 WAVE file, or null (no uncompressed `fmt `, or no `data`). */
export function wav(b: Uint8Array): number | null {
  const n = b.length;
  const rf64 = !ascii(b, 0, "RIFF");
  let fmt: { rate: number; frameBytes: number } | null = null;
  let dataBytes = -1;
  let ds64Data = -1;
  let p = 12;
  while (p + 8 <= n) {
    const size = u32le(b, p + 4);
    const body = p + 8;
    if (ascii(b, p, "ds64") && size >= 28) ds64Data = u32le(b, body + 8) + u32le(b, body + 12) * 0x100000000;
    else if (ascii(b, p, "fmt ")) {
      fmt = wavFrameBytes(b, body, size);
      if (!fmt) return null;
    } else if (ascii(b, p, "data")) {
      const declared = rf64 && size === 0xffffffff && ds64Data >= 0 ? ds64Data : size;
      // 0 and 0xFFFFFFFF are what streaming writers leave: the data runs to the end of the file.
      const streamed = declared === 0 || declared === 0xffffffff;
      dataBytes = streamed ? n - body : Math.min(declared, n - body);
      if (fmt || streamed || body + declared >= n) break;
    }
    if (size === 0xffffffff) break;
    p = body + size + (size & 1); // chunks are padded to even sizes
  }
  if (!fmt || dataBytes < 0) return null;
  return toMs(Math.floor(dataBytes / fmt.frameBytes), fmt.rate);
}
