// MP3 (and MPEG-1/2/2.5 audio layers I and II). Every frame is counted, so CBR and VBR files are exact
// and a Xing/Info/VBRI frame count is never relied on; that header frame itself carries no audio and
// is skipped, as decoders skip it. An untagged stream must start with a frame followed by another like
// it (or by the end of the file or a tag); after an ID3v2 tag, junk is tolerated and the first frame
// followed by two more like it is taken. After a break in the chain, the count resumes at the next
// frame followed by one more like it, as decoders resync. Free-format (bitrate index 0) is not read.

import { u8, ascii, positiveMs } from "./bytes.ts";

/** The first q >= from where an MPEG audio header may start (sync, no reserved version, layer, bitrate or rate); -1 if none. */
function mpegSync(b: Uint8Array, from: number): number {
  for (let q = from; q + 2 < b.length; q++) {
    if (b[q] !== 0xff) continue;
    const b1 = b[q + 1] ?? 0;
    const b2 = b[q + 2] ?? 0;
    if ((b1 & 0xe0) === 0xe0 && (b1 & 0x18) !== 0x08 && (b1 & 0x06) !== 0 && (b2 & 0xf0) !== 0xf0 && (b2 & 0xf0) !== 0 && (b2 & 0x0c) !== 0x0c) return q;
  }
  return -1;
}

/** kbps by [MPEG1 L1, MPEG1 L2, MPEG1 L3, MPEG2/2.5 L1, MPEG2/2.5 L2+L3][index]. */
const MPEG_KBPS = [
  [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

interface MpegFrame {
  length: number;
  samples: number;
  rate: number;
  /** Version, layer and sample rate: what must stay the same from frame to frame. */
  key: number;
  layer: number;
  mpeg1: boolean;
  mono: boolean;
}

/** The MPEG audio frame whose header is at p; free-format (bitrate index 0) is not read. */
function mpegFrame(b: Uint8Array, p: number): MpegFrame | null {
  const b1 = u8(b, p + 1);
  const b2 = u8(b, p + 2);
  if (u8(b, p) !== 0xff || (b1 & 0xe0) !== 0xe0 || p + 4 > b.length) return null;
  const version = (b1 >> 3) & 3; // 3 MPEG1, 2 MPEG2, 0 MPEG2.5
  const layer = 4 - ((b1 >> 1) & 3);
  const index = b2 >> 4;
  const rateIndex = (b2 >> 2) & 3;
  if (version === 1 || layer === 4 || index === 0 || index === 15 || rateIndex === 3) return null;
  const mpeg1 = version === 3;
  const rate = ([44100, 48000, 32000][rateIndex] ?? 0) >> (mpeg1 ? 0 : version === 2 ? 1 : 2);
  const bitrate = (MPEG_KBPS[mpeg1 ? layer - 1 : layer === 1 ? 3 : 4]?.[index] ?? 0) * 1000;
  const pad = (b2 >> 1) & 1;
  const samples = layer === 1 ? 384 : layer === 3 && !mpeg1 ? 576 : 1152;
  const length = layer === 1 ? (Math.floor((12 * bitrate) / rate) + pad) * 4 : Math.floor(((samples / 8) * bitrate) / rate) + pad;
  return { length, samples, rate, key: (((b1 >> 1) & 15) << 2) | rateIndex, layer, mpeg1, mono: u8(b, p + 3) >> 6 === 3 };
}

/** Whether a frame at p is followed by `depth` more like it (or by the end of the file or a tag). */
function mpegRun(b: Uint8Array, p: number, key: number | null, depth: number): boolean {
  for (let d = 0; ; d++) {
    const f = mpegFrame(b, p);
    if (!f || (key !== null && f.key !== key)) return false;
    key = f.key;
    p += f.length;
    if (d === depth || p === b.length || ascii(b, p, "TAG") || ascii(b, p, "APETAGEX") || ascii(b, p, "LYRICS")) return true;
  }
}

/** The first frame's Xing/Info (LAME) or VBRI header: a frame of no audio that decoders skip. */
function isInfoFrame(b: Uint8Array, p: number, f: MpegFrame): boolean {
  if (f.layer !== 3) return false;
  const side = f.mpeg1 ? (f.mono ? 17 : 32) : f.mono ? 9 : 17;
  return ascii(b, p + 4 + side, "Xing") || ascii(b, p + 4 + side, "Info") || ascii(b, p + 36, "VBRI");
}

/** The duration in ms of MPEG audio starting at start (past any ID3v2 tag; tagged = there was one), or null. */
export function mp3(b: Uint8Array, start: number, tagged: boolean): number | null {
  const n = b.length;
  let first = start;
  if (!mpegRun(b, start, null, 1)) {
    // Only a tagged file may have junk before its first frame (untagged, it would not be mp3 at all).
    if (!tagged) return null;
    first = -1;
    for (let q = mpegSync(b, start); q >= 0; q = mpegSync(b, q + 1)) {
      if (mpegRun(b, q, null, 2)) {
        first = q;
        break;
      }
    }
    if (first < 0) return null;
  }
  const ref = mpegFrame(b, first);
  if (!ref) return null;
  // Every frame is counted, so CBR and VBR are exact and a Xing frame count is never relied on.
  // After a break in the chain, decoders resync: so do we, on a frame followed by one more like it.
  let samples = 0;
  let p = first;
  while (p + 4 <= n) {
    const f = mpegFrame(b, p);
    if (f && f.key === ref.key) {
      if (p !== first || !isInfoFrame(b, p, f)) samples += f.samples;
      p += f.length;
      continue;
    }
    let next = -1;
    for (let q = mpegSync(b, p + 1); q >= 0; q = mpegSync(b, q + 1)) {
      if (mpegRun(b, q, ref.key, 1)) {
        next = q;
        break;
      }
    }
    if (next < 0) break;
    p = next;
  }
  return positiveMs(samples, ref.rate);
}
