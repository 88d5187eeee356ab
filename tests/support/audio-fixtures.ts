// Builders of small, structurally valid audio files for tests (there is no ffmpeg or sox here).
// Each follows its container's spec closely enough for a real decoder to accept it (WAV carries a
// quiet sine; FLAC frames are CONSTANT subframes with both CRCs; Ogg pages carry their CRC-32), and
// each takes options to build the dishonest variants the duration reader must see through.

/** Concatenates byte arrays (and plain byte lists). */
export function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The ASCII bytes of a string. */
export function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

function bytesOf(size: number, write: (v: DataView) => void): Uint8Array {
  const out = new Uint8Array(size);
  write(new DataView(out.buffer));
  return out;
}
const le16 = (v: number) => bytesOf(2, (d) => d.setUint16(0, v, true));
const le32 = (v: number) => bytesOf(4, (d) => d.setUint32(0, v, true));
const be16 = (v: number) => bytesOf(2, (d) => d.setUint16(0, v));
const be32 = (v: number) => bytesOf(4, (d) => d.setUint32(0, v));
const be64 = (v: number) => bytesOf(8, (d) => d.setBigUint64(0, BigInt(v)));

// ------------------------------------------------------------------------------------------ WAV

/** A RIFF chunk, padded to an even size. */
export function riffChunk(id: string, body: Uint8Array, declaredSize = body.length): Uint8Array {
  return concat(ascii(id), le32(declaredSize), body, body.length % 2 ? [0] : []);
}

export interface WavOptions {
  seconds: number;
  sampleRate?: number;
  channels?: number;
  bitsPerSample?: number;
  /** 1 PCM (default), 3 float, 6 a-law, 7 µ-law, 0xFFFE extensible (PCM subformat), or a compressed tag. */
  formatTag?: number;
  /** What the header claims; the default is the honest value. */
  byteRate?: number;
  blockAlign?: number;
  /** The data chunk's size field; the default is the bytes written. */
  declaredDataSize?: number;
  /** Chunks written between `fmt ` and `data` (LIST, fact...). */
  chunksBefore?: Uint8Array[];
  /** RF64 writes sizes in a ds64 chunk and 0xFFFFFFFF in the RIFF and data headers. */
  rf64?: boolean;
}

/** A WAV file of a quiet 440 Hz sine (PCM by default). */
export function wavFile({ seconds, sampleRate = 16000, channels = 1, bitsPerSample = 16, formatTag = 1, ...o }: WavOptions): Uint8Array {
  const frames = Math.round(seconds * sampleRate);
  const width = Math.ceil(bitsPerSample / 8);
  const data = new Uint8Array(frames * channels * width);
  const view = new DataView(data.buffer);
  for (let i = 0; i < frames && width > 0; i++) {
    const x = 0.05 * Math.sin((2 * Math.PI * 440 * i) / sampleRate);
    for (let c = 0; c < channels; c++) {
      const at = (i * channels + c) * width;
      if (formatTag === 3 && width === 4) view.setFloat32(at, x, true);
      else if (formatTag === 3 && width === 8) view.setFloat64(at, x, true);
      else if (width === 1) data[at] = 128 + Math.round(x * 127);
      else if (width === 2) view.setInt16(at, Math.round(x * 32767), true);
      else if (width === 3) data.set(le32(Math.round(x * 8388607) & 0xffffff).subarray(0, 3), at);
      else view.setInt32(at, Math.round(x * 2147483647), true);
    }
  }
  const blockAlign = o.blockAlign ?? channels * width;
  const common = concat(le16(formatTag), le16(channels), le32(sampleRate), le32(o.byteRate ?? sampleRate * channels * width), le16(blockAlign), le16(bitsPerSample));
  const subformat = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];
  const fmt = formatTag === 0xfffe ? concat(common, le16(22), le16(bitsPerSample), le32(channels === 2 ? 3 : 4), le16(1), subformat) : common;
  const declared = o.declaredDataSize ?? data.length;
  const chunks = [riffChunk("fmt ", fmt), ...(o.chunksBefore ?? []), riffChunk("data", data, o.rf64 ? 0xffffffff : declared)];
  if (o.rf64) {
    const ds64 = riffChunk("ds64", concat(be64ToLe(0), be64ToLe(declared), be64ToLe(frames), le32(0)));
    return concat(ascii("RF64"), le32(0xffffffff), ascii("WAVE"), ds64, ...chunks);
  }
  const body = concat(ascii("WAVE"), ...chunks);
  return concat(ascii("RIFF"), le32(body.length), body);
}

function be64ToLe(v: number): Uint8Array {
  return be64(v).reverse();
}

// ------------------------------------------------------------------------------------------ MP3

const MPEG_KBPS: Record<string, number[]> = {
  "1-1": [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  "1-2": [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  "1-3": [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  "2-1": [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  "2-2": [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
  "2-3": [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
};

export interface Mp3Options {
  /** Audio frames (a Xing/Info frame is extra). */
  frames: number;
  version?: 1 | 2 | 2.5;
  layer?: 1 | 2 | 3;
  sampleRate?: number;
  bitrateKbps?: number;
  mono?: boolean;
  /** A LAME-style first frame carrying this tag and `xingFrames` as its frame count. */
  xing?: "Xing" | "Info";
  xingFrames?: number;
  /** An ID3v2 tag of this many body bytes in front. */
  id3?: number;
  /** An ID3v1 tag at the end. */
  id3v1?: boolean;
}

/** Samples per frame of an MPEG audio layer and version. */
export function mpegFrameSamples(version: 1 | 2 | 2.5, layer: 1 | 2 | 3): number {
  return layer === 1 ? 384 : layer === 3 && version !== 1 ? 576 : 1152;
}

/** An ID3v2.4 tag with `size` bytes of (padding) body. */
export function id3v2(size: number): Uint8Array {
  return concat(ascii("ID3"), [4, 0, 0, (size >> 21) & 127, (size >> 14) & 127, (size >> 7) & 127, size & 127], new Uint8Array(size));
}

/** An MP3 (MPEG audio) file: valid frame headers with padding as an encoder sets it, zero payloads. */
export function mp3File({ frames, version = 1, layer = 3, sampleRate = 44100, bitrateKbps = 128, mono = false, ...o }: Mp3Options): Uint8Array {
  const v = version === 1 ? 1 : 2;
  const rates = version === 1 ? [44100, 48000, 32000] : version === 2 ? [22050, 24000, 16000] : [11025, 12000, 8000];
  const rateIndex = rates.indexOf(sampleRate);
  const bitrateIndex = MPEG_KBPS[`${v}-${layer}`]?.indexOf(bitrateKbps) ?? -1;
  if (rateIndex < 0 || bitrateIndex <= 0) throw new Error(`no MPEG ${version} layer ${layer} at ${sampleRate} Hz / ${bitrateKbps} kbps`);
  const samples = mpegFrameSamples(version, layer);
  const bytesPerSlot = layer === 1 ? 4 : 1;
  const slots = (layer === 1 ? 12 : samples / 8) * bitrateKbps * 1000;
  let remainder = 0;
  const frame = (body?: (f: Uint8Array) => void): Uint8Array => {
    remainder += slots % sampleRate;
    const pad = remainder >= sampleRate ? 1 : 0;
    remainder -= pad * sampleRate;
    const f = new Uint8Array((Math.floor(slots / sampleRate) + pad) * bytesPerSlot);
    const versionBits = version === 1 ? 3 : version === 2 ? 2 : 0;
    f.set([0xff, 0xe0 | (versionBits << 3) | ((4 - layer) << 1) | 1, (bitrateIndex << 4) | (rateIndex << 2) | (pad << 1), mono ? 0xc0 : 0]);
    body?.(f);
    return f;
  };
  const parts: Uint8Array[] = [];
  if (o.id3 !== undefined) parts.push(id3v2(o.id3));
  if (o.xing) {
    const side = version === 1 ? (mono ? 17 : 32) : mono ? 9 : 17;
    parts.push(frame((f) => f.set(concat(ascii(o.xing ?? "Xing"), be32(1), be32(o.xingFrames ?? frames)), 4 + side)));
  }
  for (let i = 0; i < frames; i++) parts.push(frame());
  if (o.id3v1) parts.push(concat(ascii("TAG"), new Uint8Array(125)));
  return concat(...parts);
}

// ----------------------------------------------------------------------------------------- FLAC

export interface FlacOptions {
  samples: number;
  sampleRate?: number;
  channels?: number;
  /** 8, 16 or 24. */
  bitsPerSample?: number;
  blockSize?: number;
  /** STREAMINFO's total samples; the default is the honest count, 0 means unknown. */
  declaredTotal?: number;
  /** An ID3v2 tag of this many body bytes in front. */
  id3?: number;
}

function crc(bytes: Uint8Array, width: 8 | 16, poly: number): number {
  const top = 1 << (width - 1);
  const mask = (1 << width) - 1;
  let c = 0;
  for (const byte of bytes) {
    c ^= byte << (width - 8);
    for (let k = 0; k < 8; k++) c = c & top ? ((c << 1) ^ poly) & mask : (c << 1) & mask;
  }
  return c;
}

/** A frame number as FLAC codes it (UTF-8 extended to 36 bits). */
function utf8Number(v: number): number[] {
  if (v < 0x80) return [v];
  const out = [0x80 | (v & 0x3f)];
  let rest = Math.floor(v / 64);
  let lead = 0xc0;
  for (let bits = 5; rest >= 1 << bits; bits--) {
    out.unshift(0x80 | (rest & 0x3f));
    rest = Math.floor(rest / 64);
    lead = 0x80 | (lead >> 1);
  }
  return [lead | rest, ...out];
}

/** A FLAC file of silence: STREAMINFO, a PADDING block, fixed-blocksize frames of CONSTANT subframes. */
export function flacFile({ samples, sampleRate = 16000, channels = 1, bitsPerSample = 16, blockSize = 4096, ...o }: FlacOptions): Uint8Array {
  const total = o.declaredTotal ?? samples;
  const info = new Uint8Array(34);
  info.set([...be16(blockSize), ...be16(blockSize)]);
  info.set(
    [sampleRate >> 12, (sampleRate >> 4) & 0xff, ((sampleRate & 15) << 4) | ((channels - 1) << 1) | ((bitsPerSample - 1) >> 4), (((bitsPerSample - 1) & 15) << 4) | Math.floor(total / 2 ** 32)],
    10,
  );
  info.set(be32(total % 2 ** 32), 14);
  const parts = [o.id3 === undefined ? new Uint8Array(0) : id3v2(o.id3), ascii("fLaC"), [0x00, 0, 0, 34], info, [0x81, 0, 0, 16], new Uint8Array(16)];
  const sizeCode = { 8: 1, 16: 4, 24: 6 }[bitsPerSample] ?? 0;
  for (let i = 0, done = 0; done < samples; i++, done += blockSize) {
    const block = Math.min(blockSize, samples - done);
    const header = concat([0xff, 0xf8, 0x70, ((channels - 1) << 4) | (sizeCode << 1)], utf8Number(i), be16(block - 1));
    const subframes = new Uint8Array(channels * (1 + bitsPerSample / 8)); // each: 0x00 (CONSTANT) + the value 0
    const frame = concat(header, [crc(header, 8, 0x07)], subframes);
    parts.push(frame, be16(crc(frame, 16, 0x8005)));
  }
  return concat(...parts);
}

// ------------------------------------------------------------------------------------------ Ogg

const OGG_CRC = new Uint32Array(256).map((_, i) => {
  let c = i << 24;
  for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
  return c >>> 0;
});

export interface OggPageOptions {
  serial?: number;
  sequence: number;
  /** -1 for "no packet ends here". */
  granule: bigint | number;
  /** 1 continued, 2 first page (BOS), 4 last page (EOS). */
  flags?: number;
  packets: Uint8Array[];
}

/** One Ogg page (RFC 3533) with its lacing values and CRC-32. */
export function oggPage({ serial = 0x5eed, sequence, granule, flags = 0, packets }: OggPageOptions): Uint8Array {
  const lacing: number[] = [];
  for (const p of packets) {
    for (let left = p.length; ; left -= 255) {
      lacing.push(Math.min(left, 255));
      if (left < 255) break;
    }
  }
  const g = BigInt.asUintN(64, BigInt(granule));
  const page = concat(ascii("OggS"), [0, flags], bytesOf(8, (d) => d.setBigUint64(0, g, true)), le32(serial), le32(sequence), le32(0), [lacing.length], lacing, ...packets);
  let c = 0;
  for (const byte of page) c = ((c << 8) ^ (OGG_CRC[((c >>> 24) ^ byte) & 0xff] ?? 0)) >>> 0;
  page.set(le32(c), 22);
  return page;
}

/** An Opus packet of one CELT fullband frame (2.5, 5, 10 or 20 ms; 120, 240, 480 or 960 samples). */
export function opusPacket(frameSamples = 960): Uint8Array {
  const config = { 120: 28, 240: 29, 480: 30, 960: 31 }[frameSamples];
  if (config === undefined) throw new Error(`no CELT frame of ${frameSamples} samples`);
  return Uint8Array.from([config << 3, 0xa5, 0x5a, 0xa5]);
}

/** The OpusHead identification packet (RFC 7845 §5.1). */
export function opusHead(preSkip = 312, channels = 1): Uint8Array {
  return concat(ascii("OpusHead"), [1, channels], le16(preSkip), le32(48000), le16(0), [0]);
}

export interface OggOpusOptions {
  seconds: number;
  preSkip?: number;
  frameSamples?: number;
  packetsPerPage?: number;
  /** The last page's granule position; the default is the honest one (pre-skip + seconds × 48000). */
  lastGranule?: number;
  serial?: number;
  /** The audio packet at an index (default: one CELT frame of `frameSamples`). */
  packetAt?: (index: number) => Uint8Array;
}

/** An Ogg Opus file whose last granule position ends the audio after exactly `seconds` (end trimming as opusenc does). */
export function oggOpusFile({ seconds, preSkip = 312, frameSamples = 960, packetsPerPage = 50, serial = 0x5eed, ...o }: OggOpusOptions): Uint8Array {
  const needed = Math.round(seconds * 48000) + preSkip;
  const packets = Math.ceil(needed / frameSamples);
  const pages = [
    oggPage({ serial, sequence: 0, granule: 0, flags: 2, packets: [opusHead(preSkip)] }),
    oggPage({ serial, sequence: 1, granule: 0, packets: [concat(ascii("OpusTags"), le32(4), ascii("test"), le32(0))] }),
  ];
  for (let first = 0; first < packets; first += packetsPerPage) {
    const count = Math.min(packetsPerPage, packets - first);
    const last = first + count >= packets;
    const granule = last ? (o.lastGranule ?? needed) : (first + count) * frameSamples;
    pages.push(oggPage({ serial, sequence: pages.length, granule, flags: last ? 4 : 0, packets: Array.from({ length: count }, (_, k) => o.packetAt?.(first + k) ?? opusPacket(frameSamples)) }));
  }
  return concat(...pages);
}

/** An Ogg Vorbis file (identification, comment and a stand-in setup header; 1024-sample audio packets). */
export function oggVorbisFile({ seconds, sampleRate = 44100, packetsPerPage = 50, serial = 0x7e57 }: { seconds: number; sampleRate?: number; packetsPerPage?: number; serial?: number }): Uint8Array {
  const total = Math.round(seconds * sampleRate);
  const id = concat([1], ascii("vorbis"), le32(0), [1], le32(sampleRate), le32(0), le32(128000), le32(0), [0xb8, 1]);
  const comment = concat([3], ascii("vorbis"), le32(4), ascii("test"), le32(0), [1]);
  const setup = concat([5], ascii("vorbis"), new Uint8Array(32));
  const pages = [oggPage({ serial, sequence: 0, granule: 0, flags: 2, packets: [id] }), oggPage({ serial, sequence: 1, granule: 0, packets: [comment, setup] })];
  const packets = Math.ceil(total / 1024) + 1; // the first audio packet only primes the decoder
  for (let first = 0; first < packets; first += packetsPerPage) {
    const count = Math.min(packetsPerPage, packets - first);
    const last = first + count >= packets;
    pages.push(oggPage({ serial, sequence: pages.length, granule: last ? total : (first + count - 1) * 1024, flags: last ? 4 : 0, packets: Array.from({ length: count }, () => Uint8Array.from([0, 1, 2, 3])) }));
  }
  return concat(...pages);
}

// ------------------------------------------------------------------------------------------ MP4

/** An ISO BMFF box. */
export function mp4Box(type: string, ...body: (Uint8Array | number[])[]): Uint8Array {
  const payload = concat(...body);
  return concat(be32(payload.length + 8), ascii(type), payload);
}

/** An ISO BMFF full box (version and flags first). */
export function mp4FullBox(type: string, version: number, flags: number, ...body: (Uint8Array | number[])[]): Uint8Array {
  return mp4Box(type, [version, (flags >> 16) & 0xff, (flags >> 8) & 0xff, flags & 0xff], ...body);
}

export interface Mp4Options {
  /** The audio track's duration in its timescale, as its sample table (stts) carries it. */
  units: number;
  timescale?: number;
  /** What mdhd claims; the default is `units`. */
  mdhdUnits?: number;
  /** mdhd and mvhd as version 1 (64-bit durations). */
  version?: 0 | 1;
  movieTimescale?: number;
  movieUnits?: number;
  handler?: string;
  /** Leave the trak out (only mvhd says how long the movie is). */
  noTrack?: boolean;
}

function timedBox(type: string, version: 0 | 1, scale: number, units: number, tail: Uint8Array): Uint8Array {
  return version === 1 ? mp4FullBox(type, 1, 0, be64(0), be64(0), be32(scale), be64(units), tail) : mp4FullBox(type, 0, 0, be32(0), be32(0), be32(scale), be32(units), tail);
}

function mvhd(version: 0 | 1, scale: number, units: number): Uint8Array {
  return timedBox("mvhd", version, scale, units, concat(be32(0x10000), be16(0x100), new Uint8Array(10 + 36 + 24), be32(2)));
}

function audioTrak(version: 0 | 1, scale: number, mdhdUnits: number, handler: string, stbl: Uint8Array[]): Uint8Array {
  return mp4Box(
    "trak",
    mp4FullBox("tkhd", 0, 3, be32(0), be32(0), be32(1), be32(0), be32(0), new Uint8Array(8 + 8 + 36 + 8)),
    mp4Box(
      "mdia",
      timedBox("mdhd", version, scale, mdhdUnits, be32(0x55c40000)),
      mp4FullBox("hdlr", 0, 0, be32(0), ascii(handler), new Uint8Array(12), ascii("SoundHandler\0")),
      mp4Box("minf", mp4FullBox("smhd", 0, 0, be32(0)), mp4Box("stbl", ...stbl)),
    ),
  );
}

/** An M4A file: ftyp, moov (mvhd, one audio trak whose stts carries 1024-unit samples), mdat. */
export function mp4File({ units, timescale = 44100, version = 0, movieTimescale = 1000, handler = "soun", ...o }: Mp4Options): Uint8Array {
  const full = Math.floor(units / 1024);
  const entries = [[full, 1024], ...(units % 1024 ? [[1, units % 1024]] : [])].filter(([count]) => (count ?? 0) > 0);
  const stts = mp4FullBox("stts", 0, 0, be32(entries.length), ...entries.flatMap(([count, delta]) => [be32(count ?? 0), be32(delta ?? 0)]));
  const movieUnits = o.movieUnits ?? Math.round((units * movieTimescale) / timescale);
  const moov = mp4Box("moov", mvhd(version, movieTimescale, movieUnits), o.noTrack ? [] : audioTrak(version, timescale, o.mdhdUnits ?? units, handler, [stts]));
  return concat(mp4Box("ftyp", ascii("M4A "), be32(0), ascii("M4A isom")), moov, mp4Box("mdat", new Uint8Array(64)));
}

/** A fragmented MP4 (as Safari's MediaRecorder writes): durations 0 in moov, samples in moof/trun. */
export function fragmentedMp4File({ timescale = 48000, fragments, trexDefault = 1024 }: { timescale?: number; fragments: number[][]; trexDefault?: number }): Uint8Array {
  const parts = [
    mp4Box("ftyp", ascii("iso5"), be32(0), ascii("iso5iso6mp41")),
    mp4Box(
      "moov",
      mvhd(0, 1000, 0),
      audioTrak(0, timescale, 0, "soun", [mp4FullBox("stts", 0, 0, be32(0))]),
      mp4Box("mvex", mp4FullBox("trex", 0, 0, be32(1), be32(1), be32(trexDefault), be32(0), be32(0))),
    ),
  ];
  fragments.forEach((durations, i) => {
    // An empty list stands for "every sample takes trex's default": four of them, no per-sample durations.
    const trun = durations.length
      ? mp4FullBox("trun", 0, 0x301, be32(durations.length), be32(0), ...durations.flatMap((d) => [be32(d), be32(8)]))
      : mp4FullBox("trun", 0, 0x201, be32(4), be32(0), be32(8), be32(8), be32(8), be32(8));
    parts.push(mp4Box("moof", mp4FullBox("mfhd", 0, 0, be32(i + 1)), mp4Box("traf", mp4FullBox("tfhd", 0, 0x20000, be32(1)), trun)), mp4Box("mdat", new Uint8Array(32)));
  });
  return concat(...parts);
}

// ----------------------------------------------------------------------------------------- WebM

/** An EBML element; `unknownSize` writes the all-ones size (live writers' "until the next element"). */
export function ebml(id: number, body: Uint8Array | number[], unknownSize = false): Uint8Array {
  const idBytes: number[] = [];
  for (let v = id; v > 0; v = Math.floor(v / 256)) idBytes.unshift(v & 0xff);
  const payload = Uint8Array.from(body);
  let length = 1;
  while (payload.length >= 2 ** (7 * length) - 1) length++;
  const size = unknownSize ? [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] : Array.from({ length }, (_, k) => (k === 0 ? 1 << (8 - length) : 0) | (Math.floor(payload.length / 2 ** (8 * (length - 1 - k))) & 0xff));
  return concat(idBytes, size, payload);
}

/** An EBML unsigned integer element. */
export function ebmlUint(id: number, v: number): Uint8Array {
  const bytes: number[] = [];
  for (let x = v; bytes.length === 0 || x > 0; x = Math.floor(x / 256)) bytes.unshift(x & 0xff);
  return ebml(id, bytes);
}

/** An EBML 8-byte float element. */
export function ebmlFloat(id: number, v: number): Uint8Array {
  return ebml(id, bytesOf(8, (d) => d.setFloat64(0, v)));
}

export interface WebmOptions {
  seconds: number;
  frameMs?: 2.5 | 5 | 10 | 20;
  /** Info's Duration in ms (TimecodeScale 1 ms); null writes none, as MediaRecorder does. */
  durationMs?: number | null;
  /** Unknown-size Segment and Clusters (MediaRecorder). */
  unknownSizes?: boolean;
  framesPerCluster?: number;
  /** Every block at timestamp 0 (a file that lies with its timestamps). */
  zeroTimestamps?: boolean;
  /** BlockGroups with this BlockDuration (ms) instead of SimpleBlocks. */
  blockDurationMs?: number;
  /** The track's DefaultDuration. */
  defaultDurationNs?: number;
  codec?: string;
  /** TrackType: 2 audio (default), 1 video. */
  trackType?: number;
}

/** A WebM file with one Opus track of CELT frames, in clusters of SimpleBlocks (or BlockGroups). */
export function webmFile({ seconds, frameMs = 20, durationMs = seconds * 1000, unknownSizes = false, framesPerCluster = 50, codec = "A_OPUS", ...o }: WebmOptions): Uint8Array {
  const header = ebml(0x1a45dfa3, concat(ebmlUint(0x4286, 1), ebmlUint(0x42f7, 1), ebmlUint(0x42f2, 4), ebmlUint(0x42f3, 8), ebml(0x4282, ascii("webm")), ebmlUint(0x4287, 4), ebmlUint(0x4285, 2)));
  const info = ebml(0x1549a966, concat(ebmlUint(0x2ad7b1, 1_000_000), ebml(0x4d80, ascii("test")), ebml(0x5741, ascii("test")), durationMs === null ? [] : ebmlFloat(0x4489, durationMs)));
  const entry = concat(
    ebmlUint(0xd7, 1),
    ebmlUint(0x73c5, 1),
    ebmlUint(0x83, o.trackType ?? 2),
    ebml(0x86, ascii(codec)),
    o.defaultDurationNs === undefined ? [] : ebmlUint(0x23e383, o.defaultDurationNs),
    ebml(0x63a2, opusHead()),
    ebml(0xe1, concat(ebmlFloat(0xb5, 48000), ebmlUint(0x9f, 1))),
  );
  const tracks = ebml(0x1654ae6b, ebml(0xae, entry));
  const frames = Math.round((seconds * 1000) / frameMs);
  const clusters: Uint8Array[] = [];
  for (let first = 0; first < frames; first += framesPerCluster) {
    const time = o.zeroTimestamps ? 0 : Math.floor(first * frameMs);
    const blocks: Uint8Array[] = [];
    for (let i = first; i < Math.min(frames, first + framesPerCluster); i++) {
      const relative = o.zeroTimestamps ? 0 : Math.floor(i * frameMs) - time;
      const payload = concat([0x81], be16(relative), [o.blockDurationMs === undefined ? 0x80 : 0], opusPacket(frameMs * 48));
      blocks.push(o.blockDurationMs === undefined ? ebml(0xa3, payload) : ebml(0xa0, concat(ebml(0xa1, payload), ebmlUint(0x9b, o.blockDurationMs))));
    }
    clusters.push(ebml(0x1f43b675, concat(ebmlUint(0xe7, time), ...blocks), unknownSizes));
  }
  return concat(header, ebml(0x18538067, concat(info, tracks, ...clusters), unknownSizes));
}
