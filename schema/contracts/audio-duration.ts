// The duration of an uploaded audio file, read from its container without decoding, so that a
// transcription can be priced before it runs and billed by audio seconds. It must never come out
// SHORTER than what a decoder (libsndfile, libFLAC, mpg123, libopusfile, ffmpeg) would play: wherever
// a container states a duration in more than one place, or its packets can be counted, the largest
// figure wins, and a figure a file merely claims never lowers the count of what it carries. Input is
// untrusted (up to 25 MB): every loop advances, scans are linear, nothing throws out of here.
// Plain Uint8Array/DataView only: this runs in workerd and in Node.

/** The containers read (OpenAI's mpeg/mpga are mp3; m4a is mp4). */
export type AudioFormat = "wav" | "flac" | "mp3" | "ogg" | "mp4" | "webm";

/** What audioDuration found. */
export interface AudioDuration {
  format: AudioFormat;
  /** duration in milliseconds, rounded UP to a whole ms */
  ms: number;
}

/** The duration of an audio file from its container, or null when the bytes are not a container it can read (or are truncated/corrupt so that no honest duration can be given). */
export function audioDuration(bytes: Uint8Array): AudioDuration | null {
  try {
    return detect(bytes);
  } catch {
    return null;
  }
}

function detect(b: Uint8Array): AudioDuration | null {
  const found = (format: AudioFormat, ms: number | null): AudioDuration | null => (ms === null ? null : { format, ms });
  if ((ascii(b, 0, "RIFF") || ascii(b, 0, "RF64") || ascii(b, 0, "BW64")) && ascii(b, 8, "WAVE")) return found("wav", wav(b));
  if (ascii(b, 0, "OggS")) return found("ogg", ogg(b));
  if (u32be(b, 0) === 0x1a45dfa3) return found("webm", webm(b));
  if (b.length >= 8 && MP4_FIRST_BOXES.has(u32be(b, 4))) return found("mp4", mp4(b));
  const start = skipId3v2(b);
  if (ascii(b, start, "fLaC")) return found("flac", flac(b, start));
  return found("mp3", mp3(b, start, start > 0));
}

// ---------------------------------------------------------------------------------------- bytes

function u8(b: Uint8Array, i: number): number {
  return b[i] ?? 0;
}
function u16be(b: Uint8Array, i: number): number {
  return (u8(b, i) << 8) | u8(b, i + 1);
}
function u24be(b: Uint8Array, i: number): number {
  return (u8(b, i) << 16) | (u8(b, i + 1) << 8) | u8(b, i + 2);
}
function u32be(b: Uint8Array, i: number): number {
  return u8(b, i) * 0x1000000 + u24be(b, i + 1);
}
function u64be(b: Uint8Array, i: number): number {
  return u32be(b, i) * 0x100000000 + u32be(b, i + 4);
}
function u16le(b: Uint8Array, i: number): number {
  return u8(b, i) | (u8(b, i + 1) << 8);
}
function u32le(b: Uint8Array, i: number): number {
  return u16le(b, i) + u16le(b, i + 2) * 0x10000;
}
function ascii(b: Uint8Array, i: number, s: string): boolean {
  if (i < 0 || i + s.length > b.length) return false;
  for (let k = 0; k < s.length; k++) if (b[i + k] !== s.charCodeAt(k)) return false;
  return true;
}
function fourcc(s: string): number {
  return ((s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3)) >>> 0;
}

/** The first q >= from where a FLAC frame header may start (0xFFF8 or 0xFFF9); -1 if none. */
function flacSync(b: Uint8Array, from: number): number {
  // Plain loops: indexOf costs a native call per hit, and hostile input can be all 0xFF.
  for (let q = from; q + 1 < b.length; q++) if (b[q] === 0xff && ((b[q + 1] ?? 0) & 0xfe) === 0xf8) return q;
  return -1;
}

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

/** The first q >= from where the 4 bytes read `value` (big-endian); -1 if none. */
function find4(b: Uint8Array, from: number, value: number): number {
  const first = value >>> 24;
  for (let q = from; q + 4 <= b.length; q++) if (b[q] === first && u32be(b, q) === value) return q;
  return -1;
}

/** ceil(units / perSecond) in ms, or null when either is not a sane integer or the result is absurd. */
function toMs(units: number, perSecond: number): number | null {
  if (!Number.isSafeInteger(units) || units < 0 || !Number.isSafeInteger(perSecond) || perSecond <= 0) return null;
  const den = BigInt(perSecond);
  const ms = (BigInt(units) * 1000n + den - 1n) / den;
  return ms <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(ms) : null;
}

/** ms from a sample count, where nothing decodable (0) means no honest duration. */
function positiveMs(units: number, perSecond: number): number | null {
  return units > 0 ? toMs(units, perSecond) : null;
}

/** The offset past any ID3v2 tags at the start (mp3, and flac files that carry one). */
function skipId3v2(b: Uint8Array): number {
  let p = 0;
  while (ascii(b, p, "ID3") && p + 10 <= b.length) {
    let size = 0;
    for (let k = 6; k < 10; k++) {
      const byte = u8(b, p + k);
      if (byte >= 0x80) return p; // not syncsafe: not a tag
      size = size * 128 + byte;
    }
    p += 10 + size + (u8(b, p + 5) & 0x10 ? 10 : 0); // footer flag (ID3v2.4)
  }
  return p;
}

// ------------------------------------------------------------------------------------------ WAV

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

function wav(b: Uint8Array): number | null {
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

// ----------------------------------------------------------------------------------------- FLAC

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

function flac(b: Uint8Array, start: number): number | null {
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

// ------------------------------------------------------------------------------------------ MP3

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

function mp3(b: Uint8Array, start: number, tagged: boolean): number | null {
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

// ------------------------------------------------------------------------------------------ Ogg

/** Samples at 48 kHz that an Opus packet decodes to (RFC 6716 §3.1); 0 for a malformed packet. */
function opusSamples(toc: number, second: number, length: number): number {
  if (length < 1) return 0;
  const config = toc >> 3;
  const frame = config < 12 ? [480, 960, 1920, 2880][config & 3] : config < 16 ? [480, 960][config & 1] : [120, 240, 480, 960][config & 3];
  const code = toc & 3;
  const frames = code === 0 ? 1 : code < 3 ? 2 : length < 2 ? 0 : second & 0x3f;
  const total = frames * (frame ?? 0);
  return total <= 5760 ? total : 0; // at most 120 ms a packet
}

interface OggLink {
  serial: number;
  opus: boolean;
  rate: number;
  preSkip: number;
  shortBlock: number;
  granule: number;
  absurd: boolean;
  packets: number;
  /** Opus: samples of the audio packets; Vorbis: count of audio packets. */
  audio: number;
  lastPacket: number;
  inPacket: boolean;
  skipping: boolean;
  toc: number;
  second: number;
  length: number;
}

/** A logical stream's identification header (first packet of a BOS page), or null if not Opus/Vorbis. */
function oggHead(b: Uint8Array, body: number, serial: number): OggLink | null {
  const link = { serial, rate: 48000, preSkip: 0, shortBlock: 0, granule: 0, absurd: false, packets: 0, audio: 0, lastPacket: 0, inPacket: false, skipping: false, toc: 0, second: 0, length: 0 };
  if (ascii(b, body, "OpusHead") && body + 19 <= b.length && u8(b, body + 8) < 16 && u8(b, body + 9) > 0) {
    return { ...link, opus: true, preSkip: u16le(b, body + 10) };
  }
  if (u8(b, body) === 1 && ascii(b, body + 1, "vorbis") && body + 30 <= b.length && u32le(b, body + 7) === 0) {
    const blocks = u8(b, body + 28);
    const rate = u32le(b, body + 12);
    if (rate === 0 || u8(b, body + 11) === 0 || (blocks & 15) < 6 || (blocks & 15) > 13) return null;
    return { ...link, opus: false, rate, shortBlock: 1 << (blocks & 15) };
  }
  return null;
}

function oggPacketDone(link: OggLink): void {
  const index = link.packets++;
  if (link.opus) {
    if (index < 2) return; // OpusHead, OpusTags
    link.lastPacket = opusSamples(link.toc, link.second, link.length);
    link.audio += link.lastPacket;
  } else if (index >= 3 && link.length > 0 && (link.toc & 1) === 0) link.audio++; // after the three headers
}

/**
 * A link's samples. The last granule position is what players trust, but a file can under-declare
 * it, so the packets count too: all Opus audio except the last packet, which end trimming (RFC 7845
 * §4.4) may shorten; for Vorbis, whose packet sizes need the setup header, only the lower bound of
 * half a short block per packet.
 */
function oggLinkSamples(link: OggLink): number {
  if (link.opus) return Math.max(0, Math.max(link.granule, link.audio - link.lastPacket) - link.preSkip);
  return Math.max(link.granule, (Math.max(0, link.audio - 1) * link.shortBlock) / 2);
}

const OGGS = fourcc("OggS");

function ogg(b: Uint8Array): number | null {
  const n = b.length;
  let link: OggLink | null = null;
  let otherPages = false;
  let ms = 0;
  let p = 0;
  const close = (l: OggLink): boolean => {
    const linkMs = l.absurd ? null : toMs(oggLinkSamples(l), l.rate);
    if (linkMs === null) return false;
    ms += linkMs;
    return true;
  };
  while (p + 27 <= n) {
    if (!ascii(b, p, "OggS") || u8(b, p + 4) !== 0) {
      // Lost capture: resync on the next "OggS", as libogg does.
      const q = find4(b, p + 1, OGGS);
      if (q < 0) break;
      p = q;
      continue;
    }
    const segments = u8(b, p + 26);
    const body = p + 27 + segments;
    if (body > n) break;
    let end = body;
    for (let i = 0; i < segments; i++) end += u8(b, p + 27 + i);
    const flags = u8(b, p + 5);
    const serial = u32le(b, p + 14);
    if (flags & 2) {
      // A BOS page after other pages begins a new link of a chained file; durations add up.
      const head: OggLink | null = !link || otherPages ? oggHead(b, body, serial) : null;
      if (head) {
        if (link && !close(link)) return null;
        link = head;
        otherPages = false;
      }
    } else otherPages = true;
    if (link && serial === link.serial) {
      let off = body;
      for (let i = 0; i < segments; i++) {
        const lace = u8(b, p + 27 + i);
        if (off + lace > n) break;
        if (i === 0) {
          // A continued packet whose start we never saw is dropped; so is one never finished.
          if (flags & 1) link.skipping = !link.inPacket;
          else link.inPacket = link.skipping = false;
        }
        if (!link.inPacket && !link.skipping) {
          link.inPacket = true;
          link.toc = u8(b, off);
          link.second = lace >= 2 ? u8(b, off + 1) : 0;
          link.length = 0;
        }
        link.length += lace;
        if (lace < 255) {
          if (link.inPacket) oggPacketDone(link);
          link.inPacket = link.skipping = false;
        }
        off += lace;
      }
      const lo = u32le(b, p + 6);
      const hi = u32le(b, p + 10);
      if (end <= n && !(lo === 0xffffffff && hi === 0xffffffff)) {
        // -1: no packet ends on this page. Beyond 2^53 (or negative) no honest duration is possible.
        if (hi >= 0x200000) link.absurd = true;
        else link.granule = Math.max(link.granule, hi * 0x100000000 + lo);
      }
    }
    if (end > n) break;
    p = end;
  }
  if (!link || !close(link)) return null;
  return ms > 0 ? ms : null;
}

// ------------------------------------------------------------------------------------------ MP4

const MP4_FIRST_BOXES = new Set(["ftyp", "moov", "mdat", "free", "skip", "wide"].map(fourcc));
const [MOOV, MVHD, MVEX, MEHD, TREX, TRAK, TKHD, MDIA, MDHD, HDLR, MINF, STBL, STTS, MOOF, TRAF, TFHD, TRUN, SOUN] = [
  "moov", "mvhd", "mvex", "mehd", "trex", "trak", "tkhd", "mdia", "mdhd", "hdlr", "minf", "stbl", "stts", "moof", "traf", "tfhd", "trun", "soun",
].map(fourcc);

/** Visits each box in [start, end); each step advances at least 8 bytes. False on a malformed header. */
function eachBox(b: Uint8Array, start: number, end: number, visit: (type: number, body: number, end: number) => void): boolean {
  let p = start;
  while (p + 8 <= end) {
    let size = u32be(b, p);
    let header = 8;
    if (size === 1) {
      if (p + 16 > end) return false;
      size = u64be(b, p + 8);
      header = 16;
    } else if (size === 0) size = end - p; // to the end of the enclosing box (or file)
    if (size < header) return false;
    visit(u32be(b, p + 4), p + header, Math.min(p + size, end));
    p += size;
  }
  return true;
}

/** A full box's (timescale, duration) at v0/v1 offsets (mvhd and mdhd share the layout); -1 duration = unknown. */
function timed(b: Uint8Array, body: number, end: number): { scale: number; units: number } {
  const v1 = u8(b, body) === 1;
  if (body + (v1 ? 32 : 20) > end) return { scale: 0, units: 0 };
  const units = v1 ? u64be(b, body + 24) : u32be(b, body + 16);
  const unknown = v1 ? u32be(b, body + 24) === 0xffffffff && u32be(b, body + 28) === 0xffffffff : units === 0xffffffff;
  return { scale: u32be(b, body + (v1 ? 20 : 12)), units: unknown ? 0 : units };
}

interface Mp4Track {
  id: number;
  audio: boolean;
  scale: number;
  units: number;
}

function mp4(b: Uint8Array): number | null {
  let movie = { scale: 0, units: 0 };
  let fragmentedUnits = 0; // mehd, in the movie's timescale
  const tracks: Mp4Track[] = [];
  const defaults = new Map<number, number>(); // trex: track id -> default sample duration
  const fragments = new Map<number, number>(); // track id -> summed trun sample durations
  const trak = (body: number, end: number): void => {
    const t: Mp4Track = { id: 0, audio: false, scale: 0, units: 0 };
    eachBox(b, body, end, (type, s, e) => {
      if (type === TKHD) t.id = u32be(b, s + (u8(b, s) === 1 ? 20 : 12));
      if (type !== MDIA) return;
      eachBox(b, s, e, (type2, s2, e2) => {
        if (type2 === MDHD) ({ scale: t.scale, units: t.units } = timed(b, s2, e2));
        else if (type2 === HDLR) t.audio = u32be(b, s2 + 8) === SOUN;
        else if (type2 === MINF)
          eachBox(b, s2, e2, (type3, s3, e3) => {
            if (type3 === STBL)
              eachBox(b, s3, e3, (type4, s4, e4) => {
                if (type4 !== STTS) return;
                // The sample table's durations: more than mdhd claims means mdhd under-declares.
                let sum = 0;
                const count = Math.min(u32be(b, s4 + 4), Math.floor((e4 - s4 - 8) / 8));
                for (let i = 0; i < count; i++) sum += u32be(b, s4 + 8 + i * 8) * u32be(b, s4 + 12 + i * 8);
                t.units = Math.max(t.units, sum);
              });
          });
      });
    });
    tracks.push(t);
  };
  const traf = (body: number, end: number): void => {
    let id = 0;
    let fallback: number | null = null;
    eachBox(b, body, end, (type, s, e) => {
      const flags = u24be(b, s + 1);
      if (type === TFHD) {
        id = u32be(b, s + 4);
        const at = s + 8 + (flags & 1 ? 8 : 0) + (flags & 2 ? 4 : 0);
        fallback = flags & 8 && at + 4 <= e ? u32be(b, at) : null;
      } else if (type === TRUN) {
        const count = u32be(b, s + 4);
        let off = s + 8 + (flags & 1 ? 4 : 0) + (flags & 4 ? 4 : 0);
        let sum = 0;
        if (flags & 0x100) {
          const stride = 4 * (((flags >> 8) & 1) + ((flags >> 9) & 1) + ((flags >> 10) & 1) + ((flags >> 11) & 1));
          for (let i = 0; i < count && off + 4 <= e; i++, off += stride) sum += u32be(b, off);
        } else sum = count * (fallback ?? defaults.get(id) ?? 0);
        fragments.set(id, (fragments.get(id) ?? 0) + sum);
      }
    });
  };
  eachBox(b, 0, b.length, (type, body, end) => {
    if (type === MOOV)
      eachBox(b, body, end, (t, s, e) => {
        if (t === MVHD) movie = timed(b, s, e);
        else if (t === TRAK) trak(s, e);
        else if (t === MVEX)
          eachBox(b, s, e, (t2, s2, e2) => {
            if (t2 === TREX && s2 + 16 <= e2) defaults.set(u32be(b, s2 + 4), u32be(b, s2 + 12));
            else if (t2 === MEHD) fragmentedUnits = u8(b, s2) === 1 ? u64be(b, s2 + 4) : u32be(b, s2 + 4);
          });
      });
    else if (type === MOOF)
      eachBox(b, body, end, (t, s, e) => {
        if (t === TRAF) traf(s, e);
      });
  });
  // The audio track's own figures (mdhd, its sample table, its fragments), the largest of them; the
  // movie's mvhd only when no track says it is audio.
  let best: number | null = null;
  for (const t of tracks) {
    const units = Math.max(t.units, fragments.get(t.id) ?? 0);
    if (!t.audio || units === 0) continue;
    const ms = toMs(units, t.scale);
    if (ms === null) return null; // no timescale, or an absurd duration
    best = Math.max(best ?? 0, ms);
  }
  return best ?? positiveMs(Math.max(movie.units, fragmentedUnits), movie.scale);
}

// ------------------------------------------------------------------------------------ WebM/MKV

const EBML_HEADER = 0x1a45dfa3;
const SEGMENT = 0x18538067;
const INFO = 0x1549a966;
const TRACKS = 0x1654ae6b;
const CLUSTER = 0x1f43b675;
/** Elements at Segment level (and above): one ends the Cluster it appears in, whatever that Cluster's size says. */
const SEGMENT_CHILDREN = new Set([0x114d9b74, INFO, TRACKS, CLUSTER, 0x1c53bb6b, 0x1043a770, 0x1254c367, 0x1941a469, EBML_HEADER, SEGMENT]);
/** When a block's duration is stated nowhere, no earlier block gives it and it is not Opus: 20 ms (an Opus/MediaRecorder frame). */
const ASSUMED_FRAME_NS = 20_000_000;

interface Element {
  id: number;
  size: number;
  unknown: boolean;
  data: number;
}

/** An EBML variable-size integer (marker bit removed) at p. */
function vint(b: Uint8Array, p: number): { value: number; length: number; allOnes: boolean } | null {
  const first = u8(b, p);
  const length = Math.clz32(first) - 23;
  if (first === 0 || p + length > b.length) return null;
  let value = first & (0xff >> length);
  let allOnes = value === 0xff >> length;
  for (let k = 1; k < length; k++) {
    const byte = u8(b, p + k);
    value = value * 256 + byte;
    allOnes &&= byte === 0xff;
  }
  return { value, length, allOnes };
}

function element(b: Uint8Array, p: number): Element | null {
  const first = u8(b, p);
  const idLength = Math.clz32(first) - 23;
  if (first === 0 || idLength > 4) return null;
  let id = 0;
  for (let k = 0; k < idLength; k++) id = id * 256 + u8(b, p + k);
  const size = vint(b, p + idLength);
  if (!size) return null;
  return { id, size: size.value, unknown: size.allOnes, data: p + idLength + size.length };
}

function uint(b: Uint8Array, e: Element): number {
  let v = 0;
  for (let k = 0; k < Math.min(e.size, 8); k++) v = v * 256 + u8(b, e.data + k);
  return v;
}

/** Visits each child of [start, end); stops at a malformed or unknown-size one. */
function eachChild(b: Uint8Array, start: number, end: number, visit: (e: Element) => void): void {
  for (let p = start; p < end; ) {
    const e = element(b, p);
    if (!e || e.unknown) return;
    visit(e);
    p = e.data + e.size;
  }
}

interface WebmTrack {
  audio: boolean;
  opus: boolean;
  defaultNs: number;
}

interface BlockStats {
  endNs: number;
  sumNs: number;
  lastNs: number;
  gapNs: number;
  /** The last block's duration when it was guessed rather than stated (0 when stated). */
  guessNs: number;
  blocks: number;
}

/** The [offset, length] of each frame of a block's payload (Matroska lacing: none, Xiph, fixed, EBML). */
function lacedFrames(b: Uint8Array, p: number, end: number, lacing: number): [number, number][] | null {
  if (lacing === 0) return [[p, end - p]];
  const count = u8(b, p++) + 1;
  const sizes: number[] = [];
  for (let i = 0; i < count - 1; i++) {
    if (p >= end) return null;
    if (lacing === 1) {
      let size = 0;
      for (let byte = 255; byte === 255 && p < end; p++) size += byte = u8(b, p);
      sizes.push(size);
    } else if (lacing === 3) {
      const v = vint(b, p);
      if (!v) return null;
      p += v.length;
      const previous = sizes[i - 1] ?? 0;
      sizes.push(i === 0 ? v.value : previous + v.value - (2 ** (7 * v.length - 1) - 1));
    } else sizes.push((end - p) / count);
  }
  const lastSize = end - p - sizes.reduce((a, s) => a + s, 0);
  if (lastSize < 0 || sizes.some((s) => s < 0 || !Number.isInteger(s))) return null;
  sizes.push(lastSize);
  return sizes.map((s) => {
    const frame: [number, number] = [p, s];
    p += s;
    return frame;
  });
}

function webm(b: Uint8Array): number | null {
  const n = b.length;
  const head = element(b, 0);
  if (!head || head.unknown) return null;
  let scale = 1_000_000;
  let durationNs = 0;
  let sawTracks = false;
  const tracks = new Map<number, WebmTrack>();
  let audioTrack = -1;
  const stats = new Map<number, BlockStats>();

  const block = (start: number, end: number, clusterTime: number, stated: number | null): void => {
    const track = vint(b, start);
    if (!track || start + track.length + 3 > end) return;
    const at = start + track.length;
    const tsNs = (clusterTime + ((u16be(b, at) << 16) >> 16)) * scale;
    const frames = lacedFrames(b, at + 3, end, (u8(b, at + 2) >> 1) & 3);
    const info = tracks.get(track.value);
    let st = stats.get(track.value);
    if (!st) stats.set(track.value, (st = { endNs: 0, sumNs: 0, lastNs: 0, gapNs: 0, guessNs: 0, blocks: 0 }));
    if (st.blocks > 0 && tsNs > st.lastNs) {
      st.gapNs = tsNs - st.lastNs;
      // The previous block's guessed duration turns out to be the distance to this one.
      st.sumNs += st.guessNs > 0 ? st.gapNs - st.guessNs : 0;
    }
    st.lastNs = tsNs;
    st.blocks++;
    const count = frames?.length ?? 1;
    let durNs: number;
    st.guessNs = 0;
    if (stated !== null) durNs = stated * scale;
    else if (info?.defaultNs) durNs = info.defaultNs * count;
    else if (info?.opus && frames) durNs = (frames.reduce((a, [o, l]) => a + opusSamples(u8(b, o), u8(b, o + 1), l), 0) * 62_500) / 3;
    else durNs = st.guessNs = st.gapNs > 0 ? st.gapNs : ASSUMED_FRAME_NS * count; // as far apart as the track's blocks have been
    st.endNs = Math.max(st.endNs, tsNs + durNs);
    st.sumNs += durNs;
  };

  /** Walks a Cluster's children, up to its end or the first Segment-level element (how an unknown-size one ends). */
  const cluster = (start: number, end: number, unknown: boolean): { next: number; corrupt: boolean } => {
    let time = 0;
    let p = start;
    while (p < end) {
      const e = element(b, p);
      // A Segment-level element ends an unknown-size Cluster, and one whose size swallows the next.
      if (e && SEGMENT_CHILDREN.has(e.id)) return { next: p, corrupt: false };
      if (!e || e.unknown) return { next: p, corrupt: true };
      const dataEnd = Math.min(e.data + e.size, n);
      if (e.id === 0xe7) time = uint(b, e);
      else if (e.id === 0xa3) block(e.data, dataEnd, time, null);
      else if (e.id === 0xa0) {
        // BlockGroup: its Block, with the BlockDuration that may follow it.
        const group: { block: Element | null; stated: number | null } = { block: null, stated: null };
        eachChild(b, e.data, dataEnd, (c) => {
          if (c.id === 0xa1) group.block = c;
          else if (c.id === 0x9b) group.stated = uint(b, c);
        });
        if (group.block) block(group.block.data, Math.min(group.block.data + group.block.size, n), time, group.stated);
      }
      p = e.data + e.size;
    }
    return { next: unknown ? p : end, corrupt: false };
  };

  /** After corrupt bytes, the next Cluster ID (ffmpeg resyncs the same way). */
  const resync = (from: number): number => {
    const q = find4(b, from, CLUSTER);
    return q < 0 ? n : q;
  };

  // Segment-level walk to the end of the file (a Segment's declared size is not trusted to end it).
  let p = head.data + head.size;
  while (p < n) {
    const e = element(b, p);
    if (!e || (e.unknown && e.id !== CLUSTER && e.id !== SEGMENT) || !(SEGMENT_CHILDREN.has(e.id) || e.id === 0xec || e.id === 0xbf)) {
      p = resync(p + 1);
      continue;
    }
    if (e.id === SEGMENT) {
      p = e.data;
      continue;
    }
    const end = Math.min(e.data + e.size, n);
    if (e.id === CLUSTER) {
      const r = cluster(e.data, e.unknown ? n : end, e.unknown);
      p = r.corrupt ? resync(r.next + 1) : e.unknown || r.next < end ? r.next : e.data + e.size;
      continue;
    }
    if (e.id === INFO) {
      let duration = 0;
      eachChild(b, e.data, end, (c) => {
        if (c.id === 0x2ad7b1) scale = uint(b, c) || 1_000_000;
        else if (c.id === 0x4489 && (c.size === 4 || c.size === 8) && c.data + c.size <= n) {
          const view = new DataView(b.buffer, b.byteOffset + c.data, c.size);
          duration = c.size === 4 ? view.getFloat32(0) : view.getFloat64(0);
        }
      });
      if (Number.isFinite(duration) && duration > 0) durationNs = Math.max(durationNs, Math.round(duration * scale));
    } else if (e.id === TRACKS) {
      sawTracks = true;
      eachChild(b, e.data, end, (entry) => {
        if (entry.id !== 0xae) return;
        let number = 0;
        let type = 0;
        let audio = false;
        let opus = false;
        let defaultNs = 0;
        eachChild(b, entry.data, Math.min(entry.data + entry.size, n), (c) => {
          if (c.id === 0xd7) number = uint(b, c);
          else if (c.id === 0x83) type = uint(b, c);
          else if (c.id === 0x23e383) defaultNs = uint(b, c);
          else if (c.id === 0x86) {
            audio = ascii(b, c.data, "A_");
            opus = c.size === 6 && ascii(b, c.data, "A_OPUS");
          }
        });
        audio ||= type === 2;
        tracks.set(number, { audio, opus, defaultNs });
        if (audio && audioTrack < 0) audioTrack = number;
      });
    }
    p = e.data + e.size;
  }

  // The first audio track's blocks; all blocks when the file has no Tracks (larger is safer).
  let blocks = { endNs: 0, sumNs: 0 };
  if (audioTrack >= 0) blocks = stats.get(audioTrack) ?? blocks;
  else if (sawTracks && tracks.size > 0) return null;
  else for (const s of stats.values()) blocks = { endNs: Math.max(blocks.endNs, s.endNs), sumNs: Math.max(blocks.sumNs, s.sumNs) };
  const ns = Math.max(durationNs, blocks.endNs, blocks.sumNs);
  return Number.isFinite(ns) ? positiveMs(Math.ceil(ns), 1e9) : null;
}
