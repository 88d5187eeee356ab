import { describe, expect, it } from "vitest";
import { audioDuration } from "../../schema/contracts/audio-duration.ts";
import {
  ascii,
  concat,
  ebml,
  ebmlUint,
  flacFile,
  fragmentedMp4File,
  id3v2,
  mp3File,
  mp4Box,
  mp4File,
  oggOpusFile,
  oggPage,
  oggVorbisFile,
  opusHead,
  opusPacket,
  riffChunk,
  wavFile,
  webmFile,
} from "../support/audio-fixtures.ts";

/** ceil(units / perSecond) in ms, as the reader rounds. */
const ms = (units: number, perSecond: number) => Math.ceil((units * 1000) / perSecond);

/** Deterministic pseudo-random bytes (xorshift32). */
function noise(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** The offset of the first occurrence of a byte pattern at or after `from`. */
function find(bytes: Uint8Array, pattern: number[], from = 0): number {
  for (let i = from; i + pattern.length <= bytes.length; i++) if (pattern.every((v, k) => bytes[i + k] === v)) return i;
  return -1;
}

describe("WAV", () => {
  it("reads a 2.5 s 16 kHz mono 16-bit PCM file as 2500 ms", () => {
    expect(audioDuration(wavFile({ seconds: 2.5 }))).toEqual({ format: "wav", ms: 2500 });
  });

  it("is exact for other sample layouts: 8/24-bit PCM, float, a-law, µ-law, extensible, RF64", () => {
    expect(audioDuration(wavFile({ seconds: 1.5, sampleRate: 44100, channels: 2, bitsPerSample: 24 }))?.ms).toBe(1500);
    expect(audioDuration(wavFile({ seconds: 1, sampleRate: 8000, bitsPerSample: 8 }))?.ms).toBe(1000);
    expect(audioDuration(wavFile({ seconds: 0.75, sampleRate: 48000, channels: 2, bitsPerSample: 32, formatTag: 3 }))?.ms).toBe(750);
    expect(audioDuration(wavFile({ seconds: 0.5, sampleRate: 22050, bitsPerSample: 64, formatTag: 3 }))?.ms).toBe(500);
    expect(audioDuration(wavFile({ seconds: 2, sampleRate: 8000, bitsPerSample: 8, formatTag: 6 }))?.ms).toBe(2000);
    expect(audioDuration(wavFile({ seconds: 2, sampleRate: 8000, bitsPerSample: 8, formatTag: 7 }))?.ms).toBe(2000);
    expect(audioDuration(wavFile({ seconds: 1.25, sampleRate: 48000, channels: 2, bitsPerSample: 16, formatTag: 0xfffe }))?.ms).toBe(1250);
    expect(audioDuration(wavFile({ seconds: 3, rf64: true }))).toEqual({ format: "wav", ms: 3000 });
  });

  it("rounds a fraction of a millisecond up", () => {
    expect(audioDuration(wavFile({ seconds: 44101 / 44100, sampleRate: 44100 }))?.ms).toBe(1001);
    expect(audioDuration(wavFile({ seconds: 1 / 16000 }))?.ms).toBe(1);
  });

  it("counts only the data bytes present when the data chunk declares more, and only the declared ones when it declares less", () => {
    expect(audioDuration(wavFile({ seconds: 2, declaredDataSize: 100_000_000 }))?.ms).toBe(2000);
    expect(audioDuration(wavFile({ seconds: 2, declaredDataSize: 16_000 }))?.ms).toBe(500);
  });

  it("reads a streamed WAV (data size 0 or 0xFFFFFFFF) to the end of the file", () => {
    expect(audioDuration(wavFile({ seconds: 3, declaredDataSize: 0 }))?.ms).toBe(3000);
    expect(audioDuration(wavFile({ seconds: 3, declaredDataSize: 0xffffffff }))?.ms).toBe(3000);
  });

  it("ignores a huge byteRate and a wrong blockAlign in the header", () => {
    expect(audioDuration(wavFile({ seconds: 2.5, byteRate: 0xfffffff0, blockAlign: 60000 }))?.ms).toBe(2500);
    expect(audioDuration(wavFile({ seconds: 2.5, byteRate: 1, blockAlign: 1 }))?.ms).toBe(2500);
  });

  it("walks past other chunks, odd-sized ones included", () => {
    const chunks = [riffChunk("LIST", ascii("INFOISFT")), riffChunk("junk", ascii("odd")), riffChunk("fact", new Uint8Array(4))];
    expect(audioDuration(wavFile({ seconds: 2.5, chunksBefore: chunks }))?.ms).toBe(2500);
  });

  it("refuses compressed WAV (ADPCM, MP3-in-WAV, GSM) and malformed fmt chunks", () => {
    for (const formatTag of [2, 0x11, 0x31, 0x55]) expect(audioDuration(wavFile({ seconds: 1, formatTag, bitsPerSample: 4 }))).toBeNull();
    expect(audioDuration(wavFile({ seconds: 1, bitsPerSample: 0 }))).toBeNull();
    expect(audioDuration(wavFile({ seconds: 1, sampleRate: 0 }))).toBeNull();
    expect(audioDuration(wavFile({ seconds: 1, channels: 0 }))).toBeNull();
  });

  it("refuses a header cut before the data chunk, and counts the samples that arrived after it", () => {
    const file = wavFile({ seconds: 1 });
    for (const cut of [4, 12, 20, 30, 36, 40, 43]) expect(audioDuration(file.subarray(0, cut))).toBeNull();
    expect(audioDuration(file.subarray(0, 44))).toEqual({ format: "wav", ms: 0 });
    expect(audioDuration(file.subarray(0, 44 + 3200))?.ms).toBe(100);
  });
});

describe("FLAC", () => {
  it("reads STREAMINFO's total samples", () => {
    expect(audioDuration(flacFile({ samples: 110_250, sampleRate: 44100, channels: 2 }))).toEqual({ format: "flac", ms: 2500 });
    expect(audioDuration(flacFile({ samples: 48_000 * 3 + 1, sampleRate: 48000, bitsPerSample: 24 }))?.ms).toBe(3001);
  });

  it("counts the frames when STREAMINFO claims fewer samples than they carry", () => {
    expect(audioDuration(flacFile({ samples: 40_000, declaredTotal: 1 }))?.ms).toBe(2500);
    expect(audioDuration(flacFile({ samples: 40_000, declaredTotal: 1, bitsPerSample: 8, channels: 2, blockSize: 1152 }))?.ms).toBe(2500);
  });

  it("counts the frames when the total is unknown (0), multi-byte frame numbers included", () => {
    expect(audioDuration(flacFile({ samples: 48_000, declaredTotal: 0, blockSize: 16 }))?.ms).toBe(3000);
    expect(audioDuration(flacFile({ samples: 40_000, declaredTotal: 0, blockSize: 4096 }))?.ms).toBe(2500);
  });

  it("keeps STREAMINFO's total when the frames were cut off, and reads FLAC behind an ID3v2 tag", () => {
    expect(audioDuration(flacFile({ samples: 40_000 }).subarray(0, 120))?.ms).toBe(2500);
    expect(audioDuration(flacFile({ samples: 40_000, id3: 300 }))).toEqual({ format: "flac", ms: 2500 });
  });

  it("refuses FLAC without STREAMINFO, with a sample rate of 0, or with nothing to count", () => {
    expect(audioDuration(concat(ascii("fLaC"), [0x84, 0, 0, 4], new Uint8Array(4)))).toBeNull();
    expect(audioDuration(flacFile({ samples: 16_000 }).subarray(0, 30))).toBeNull();
    expect(audioDuration(flacFile({ samples: 16_000, sampleRate: 0 }))).toBeNull();
    expect(audioDuration(flacFile({ samples: 16_000, declaredTotal: 0 }).subarray(0, 62))).toBeNull();
  });
});

describe("MP3", () => {
  it("counts the frames of a CBR MPEG-1 Layer III file (1152 samples each)", () => {
    expect(audioDuration(mp3File({ frames: 100 }))).toEqual({ format: "mp3", ms: ms(100 * 1152, 44100) });
  });

  it("knows MPEG-2 and 2.5 (576 samples), Layer I (384) and Layer II (1152), mono and stereo", () => {
    expect(audioDuration(mp3File({ frames: 200, version: 2, sampleRate: 22050, bitrateKbps: 64 }))?.ms).toBe(ms(200 * 576, 22050));
    expect(audioDuration(mp3File({ frames: 50, version: 2.5, sampleRate: 8000, bitrateKbps: 8, mono: true }))?.ms).toBe(3600);
    expect(audioDuration(mp3File({ frames: 100, layer: 1, sampleRate: 48000, bitrateKbps: 384 }))?.ms).toBe(800);
    expect(audioDuration(mp3File({ frames: 50, layer: 2, sampleRate: 32000, bitrateKbps: 192 }))?.ms).toBe(1800);
    expect(audioDuration(mp3File({ frames: 90, version: 2, layer: 2, sampleRate: 16000, bitrateKbps: 32, mono: true }))?.ms).toBe(ms(90 * 1152, 16000));
  });

  it("counts every frame of a VBR file", () => {
    const vbr = concat(mp3File({ frames: 10, bitrateKbps: 128 }), mp3File({ frames: 20, bitrateKbps: 320 }), mp3File({ frames: 30, bitrateKbps: 32, mono: true }));
    expect(audioDuration(vbr)?.ms).toBe(ms(60 * 1152, 44100));
  });

  it("skips an ID3v2 tag and the Xing/Info frame, and ignores the frame count the Xing frame claims", () => {
    expect(audioDuration(mp3File({ frames: 100, id3: 2000, xing: "Info" }))?.ms).toBe(ms(100 * 1152, 44100));
    expect(audioDuration(mp3File({ frames: 100, xing: "Xing", xingFrames: 1 }))?.ms).toBe(ms(100 * 1152, 44100));
    expect(audioDuration(mp3File({ frames: 40, version: 2, sampleRate: 24000, bitrateKbps: 32, mono: true, xing: "Xing", xingFrames: 1 }))?.ms).toBe(960);
  });

  it("ignores garbage and an ID3v1 tag after the last frame", () => {
    expect(audioDuration(mp3File({ frames: 100, id3v1: true }))?.ms).toBe(ms(100 * 1152, 44100));
    expect(audioDuration(concat(mp3File({ frames: 100 }), noise(5000, 7)))?.ms).toBe(ms(100 * 1152, 44100));
  });

  it("keeps counting the frames that follow junk in the middle, as decoders resync", () => {
    expect(audioDuration(concat(mp3File({ frames: 50 }), ascii("junk!!"), mp3File({ frames: 50 })))?.ms).toBe(ms(100 * 1152, 44100));
  });

  it("finds the first frame after padding that follows an ID3v2 tag", () => {
    expect(audioDuration(concat(id3v2(100), new Uint8Array(37), mp3File({ frames: 100 })))?.ms).toBe(ms(100 * 1152, 44100));
  });

  it("refuses free-format streams, ADTS AAC, and bytes that are not MPEG audio", () => {
    const free = concat(...Array.from({ length: 20 }, () => concat([0xff, 0xfb, 0x00, 0x00], new Uint8Array(400))));
    expect(audioDuration(free)).toBeNull();
    const adts = concat(...Array.from({ length: 20 }, () => concat([0xff, 0xf1, 0x50, 0x80, 0x10, 0x1f, 0xfc], new Uint8Array(121))));
    expect(audioDuration(adts)).toBeNull();
    expect(audioDuration(ascii("this is not audio at all"))).toBeNull();
    expect(audioDuration(id3v2(100))).toBeNull();
  });
});

describe("Ogg", () => {
  it("reads Ogg Opus from the last granule position less the pre-skip (48000 × 3 + 312 → 3000 ms)", () => {
    const file = oggOpusFile({ seconds: 3, preSkip: 312 });
    expect(audioDuration(file)).toEqual({ format: "ogg", ms: 3000 });
    expect(audioDuration(oggOpusFile({ seconds: 2.5, preSkip: 3840, frameSamples: 480 }))?.ms).toBe(2500);
  });

  it("reads Ogg Vorbis from the last granule position and the identification header's rate", () => {
    expect(audioDuration(oggVorbisFile({ seconds: 2.5, sampleRate: 44100 }))).toEqual({ format: "ogg", ms: 2500 });
    expect(audioDuration(oggVorbisFile({ seconds: 1.001, sampleRate: 16000 }))?.ms).toBe(1001);
  });

  it("ignores pages whose granule position is -1", () => {
    const file = concat(oggOpusFile({ seconds: 3 }), oggPage({ sequence: 99, granule: -1, packets: [] }));
    expect(audioDuration(file)?.ms).toBe(3000);
  });

  it("does not believe a last granule position smaller than the packets: all but the last packet count", () => {
    // 151 packets of 960 samples; end trimming may cut into the last one only.
    expect(audioDuration(oggOpusFile({ seconds: 3, lastGranule: 312 + 48_000 }))?.ms).toBe(ms(150 * 960 - 312, 48000));
  });

  it("walks pages by their structure, so an Ogg page hidden inside a packet is not read", () => {
    const fake = oggPage({ sequence: 7, granule: 48_000 * 3600, flags: 4, packets: [opusPacket()] });
    const file = oggOpusFile({ seconds: 3, packetAt: (i) => (i === 10 ? concat(opusPacket(), fake) : opusPacket()) });
    expect(audioDuration(file)?.ms).toBe(3000);
  });

  it("adds up the links of a chained file", () => {
    expect(audioDuration(concat(oggOpusFile({ seconds: 1, serial: 1 }), oggOpusFile({ seconds: 2, serial: 2 })))?.ms).toBe(3000);
  });

  it("resyncs on the next page after garbage between pages", () => {
    const file = oggOpusFile({ seconds: 3 });
    const audioStart = find(file, [0x4f, 0x67, 0x67, 0x53], find(file, [0x4f, 0x67, 0x67, 0x53], 1) + 1);
    expect(audioDuration(concat(file.subarray(0, audioStart), noise(300, 3), file.subarray(audioStart)))?.ms).toBe(3000);
  });

  it("refuses Ogg without an Opus or Vorbis stream, and Ogg with headers but no audio", () => {
    const flacInOgg = oggPage({ sequence: 0, granule: 0, flags: 2, packets: [concat([0x7f], ascii("FLAC"), new Uint8Array(40))] });
    expect(audioDuration(concat(flacInOgg, oggPage({ sequence: 1, granule: 48_000, flags: 4, packets: [new Uint8Array(10)] })))).toBeNull();
    expect(audioDuration(oggPage({ sequence: 0, granule: 0, flags: 2, packets: [opusHead()] }))).toBeNull();
    expect(audioDuration(oggOpusFile({ seconds: 1 }).subarray(0, 20))).toBeNull();
  });

  it("refuses a granule position no honest stream has (beyond 2^53)", () => {
    expect(audioDuration(oggOpusFile({ seconds: 1, lastGranule: 2 ** 60 }))).toBeNull();
  });
});

describe("MP4/M4A", () => {
  it("reads the audio track's mdhd", () => {
    expect(audioDuration(mp4File({ units: 110_250, timescale: 44100 }))).toEqual({ format: "mp4", ms: 2500 });
    expect(audioDuration(mp4File({ units: 48_000 * 3 + 1, timescale: 48000 }))?.ms).toBe(3001);
  });

  it("reads version 1 boxes (64-bit durations)", () => {
    expect(audioDuration(mp4File({ units: 110_250, timescale: 44100, version: 1 }))?.ms).toBe(2500);
  });

  it("prefers the audio track to the movie header, and falls back to mvhd without a track", () => {
    expect(audioDuration(mp4File({ units: 110_250, timescale: 44100, movieUnits: 10_000 }))?.ms).toBe(2500);
    expect(audioDuration(mp4File({ units: 110_250, timescale: 44100, noTrack: true }))?.ms).toBe(2500);
  });

  it("takes the larger of mdhd and the sample table", () => {
    expect(audioDuration(mp4File({ units: 110_250, mdhdUnits: 1000, timescale: 44100 }))?.ms).toBe(2500);
    expect(audioDuration(mp4File({ units: 110_250, mdhdUnits: 132_300, timescale: 44100 }))?.ms).toBe(3000);
  });

  it("sums the fragments' sample durations of a fragmented file (Safari's MediaRecorder)", () => {
    const durations = [Array.from({ length: 47 }, () => 1024), Array.from({ length: 50 }, () => 960)];
    expect(audioDuration(fragmentedMp4File({ timescale: 48000, fragments: durations }))?.ms).toBe(ms(47 * 1024 + 50 * 960, 48000));
    expect(audioDuration(fragmentedMp4File({ timescale: 48000, fragments: [[], []], trexDefault: 1200 }))?.ms).toBe(ms(8 * 1200, 48000));
  });

  it("reads 64-bit (largesize) boxes and a last box of size 0", () => {
    const file = mp4File({ units: 110_250, timescale: 44100 });
    const ftypEnd = (file[3] ?? 0) | ((file[2] ?? 0) << 8);
    const moovSize = new DataView(file.buffer).getUint32(ftypEnd);
    const moovBody = file.subarray(ftypEnd + 8, ftypEnd + moovSize);
    const large = concat([0, 0, 0, 1], ascii("moov"), [0, 0, 0, 0, 0, 0, 0, 0], moovBody);
    new DataView(large.buffer).setUint32(12, large.length);
    const toEnd = concat([0, 0, 0, 0], ascii("mdat"), new Uint8Array(100));
    expect(audioDuration(concat(file.subarray(0, ftypEnd), large, toEnd))?.ms).toBe(2500);
  });

  it("refuses a file with no duration anywhere", () => {
    expect(audioDuration(mp4File({ units: 0, movieUnits: 0 }))).toBeNull();
    expect(audioDuration(mp4Box("ftyp", ascii("M4A "), [0, 0, 0, 0]))).toBeNull();
    expect(audioDuration(mp4File({ units: 1000 }).subarray(0, 40))).toBeNull();
  });

  it("terminates on degenerate box structures: endless empty boxes, deep nesting, undersized and oversized boxes", () => {
    const empties = new Uint8Array(8 * 200_000);
    for (let p = 0; p < empties.length; p += 8) empties.set([0, 0, 0, 8, 0x66, 0x72, 0x65, 0x65], p); // "free"
    expect(audioDuration(empties)).toBeNull();

    const depth = 100_000;
    const nested = new Uint8Array(8 * depth);
    for (let d = 0; d < depth; d++) {
      new DataView(nested.buffer).setUint32(8 * d, 8 * (depth - d));
      nested.set(ascii(d % 2 ? "trak" : "moov"), 8 * d + 4);
    }
    expect(audioDuration(nested)).toBeNull();

    const undersized = concat(mp4Box("ftyp", ascii("isom")), [0, 0, 0, 4], ascii("moov"), new Uint8Array(64));
    expect(audioDuration(undersized)).toBeNull();
    const badLarge = concat(mp4Box("ftyp", ascii("isom")), [0, 0, 0, 1], ascii("moov"), [0, 0, 0, 0, 0, 0, 0, 9]);
    expect(audioDuration(badLarge)).toBeNull();
    const oversized = concat(mp4Box("ftyp", ascii("isom")), [0xff, 0xff, 0xff, 0xff], ascii("moov"), mp4Box("mvhd", new Uint8Array(4)));
    expect(audioDuration(oversized)).toBeNull();
  });
});

describe("WebM/Matroska", () => {
  it("reads Info's Duration (in TimecodeScale units)", () => {
    expect(audioDuration(webmFile({ seconds: 3 }))).toEqual({ format: "webm", ms: 3000 });
    expect(audioDuration(webmFile({ seconds: 2, durationMs: 2500.25 }))?.ms).toBe(2501);
  });

  it("reads a MediaRecorder recording (unknown-size Segment and Clusters, no Duration) from its clusters", () => {
    expect(audioDuration(webmFile({ seconds: 3, durationMs: null, unknownSizes: true }))?.ms).toBe(3000);
    expect(audioDuration(webmFile({ seconds: 3, durationMs: null, unknownSizes: true, frameMs: 10, framesPerCluster: 7 }))?.ms).toBe(3000);
    expect(audioDuration(webmFile({ seconds: 3, durationMs: null }))?.ms).toBe(3000);
  });

  it("takes the clusters' end over a Duration that is smaller", () => {
    expect(audioDuration(webmFile({ seconds: 3, durationMs: 1000 }))?.ms).toBe(3000);
    expect(audioDuration(webmFile({ seconds: 3, durationMs: 1000, unknownSizes: true }))?.ms).toBe(3000);
  });

  it("counts Opus frames when the timestamps lie (every block at 0)", () => {
    expect(audioDuration(webmFile({ seconds: 3, durationMs: 20, zeroTimestamps: true }))?.ms).toBe(3000);
  });

  it("uses BlockDuration, DefaultDuration, or the spacing of the blocks for the last one", () => {
    expect(audioDuration(webmFile({ seconds: 3, durationMs: null, blockDurationMs: 20 }))?.ms).toBe(3000);
    expect(audioDuration(webmFile({ seconds: 3, durationMs: null, codec: "A_VORBIS", defaultDurationNs: 20_000_000 }))?.ms).toBe(3000);
    expect(audioDuration(webmFile({ seconds: 3, durationMs: null, codec: "A_AAC", frameMs: 10 }))?.ms).toBe(3000);
  });

  it("counts every frame of a laced block (Xiph, fixed-size and EBML lacing)", () => {
    const header = ebml(0x1a45dfa3, ebml(0x4282, ascii("webm")));
    const tracks = ebml(0x1654ae6b, ebml(0xae, concat(ebmlUint(0xd7, 1), ebmlUint(0x83, 2), ebml(0x86, ascii("A_OPUS")))));
    const frames = [opusPacket(960), opusPacket(960), opusPacket(960)]; // 4 bytes each
    const laced = (lacing: number, sizes: number[]) => {
      const block = ebml(0xa3, concat([0x81, 0, 0, 0x80 | (lacing << 1), frames.length - 1], sizes, ...frames));
      return concat(header, ebml(0x18538067, concat(tracks, ebml(0x1f43b675, concat(ebmlUint(0xe7, 0), block))), true));
    };
    expect(audioDuration(laced(1, [4, 4]))?.ms).toBe(60);
    expect(audioDuration(laced(2, []))?.ms).toBe(60);
    expect(audioDuration(laced(3, [0x84, 0xbf]))?.ms).toBe(60); // 4, then a difference of 0
  });

  it("counts the blocks of a recording cut short", () => {
    const file = webmFile({ seconds: 3, durationMs: null, unknownSizes: true });
    const got = audioDuration(file.subarray(0, Math.floor(file.length / 2)))?.ms ?? 0;
    expect(got).toBeGreaterThan(1300);
    expect(got).toBeLessThan(1700);
  });

  it("resyncs on the next Cluster after corrupt bytes", () => {
    const file = webmFile({ seconds: 3, durationMs: null, unknownSizes: true });
    const second = find(file, [0x1f, 0x43, 0xb6, 0x75], find(file, [0x1f, 0x43, 0xb6, 0x75]) + 1);
    expect(audioDuration(concat(file.subarray(0, second), new Uint8Array(16), file.subarray(second)))?.ms).toBe(3000);
  });

  it("does not let a Cluster whose size swallows the next ones hide their blocks", () => {
    const file = webmFile({ seconds: 3, durationMs: null });
    const first = find(file, [0x1f, 0x43, 0xb6, 0x75]);
    expect((file[first + 4] ?? 0) & 0xc0).toBe(0x40); // a 2-byte size: set it to the largest one
    const patched = file.slice();
    patched.set([0x7f, 0xfe], first + 4);
    expect(audioDuration(patched)?.ms).toBe(3000);
  });

  it("refuses an EBML header with no Segment, a file with no audio track, and one with no duration at all", () => {
    const file = webmFile({ seconds: 1 });
    const header = file.subarray(0, find(file, [0x18, 0x53, 0x80, 0x67]));
    expect(audioDuration(header)).toBeNull();
    expect(audioDuration(webmFile({ seconds: 1, codec: "V_VP8", trackType: 1 }))).toBeNull();
    expect(audioDuration(webmFile({ seconds: 0, durationMs: null }))).toBeNull();
    expect(audioDuration(concat(header, ebml(0x18538067, [], true)))).toBeNull();
  });
});

describe("hostile input", () => {
  it("returns null for empty input, a few bytes, and random bytes", () => {
    expect(audioDuration(new Uint8Array(0))).toBeNull();
    expect(audioDuration(Uint8Array.from([0xff]))).toBeNull();
    for (let seed = 1; seed <= 50; seed++) expect(audioDuration(noise(4096, seed))).toBeNull();
  });

  it("never throws and answers a whole number of ms (or null) for truncated and bit-flipped files", () => {
    const files = [
      wavFile({ seconds: 0.5 }),
      flacFile({ samples: 8000, declaredTotal: 0, blockSize: 256 }),
      mp3File({ frames: 20, id3: 50, xing: "Info" }),
      oggOpusFile({ seconds: 0.5, packetsPerPage: 7 }),
      oggVorbisFile({ seconds: 0.5 }),
      mp4File({ units: 22_050 }),
      fragmentedMp4File({ fragments: [[1024, 1024], []] }),
      webmFile({ seconds: 0.5, durationMs: null, unknownSizes: true, framesPerCluster: 5 }),
    ];
    const rand = noise(files.length * 400 * 4, 99);
    let r = 0;
    const next = () => rand[r++] ?? 0;
    for (const file of files) {
      for (let i = 0; i < 400; i++) {
        const copy = file.slice(0, Math.max(1, Math.floor((file.length * (next() + 1)) / 256)));
        const at = (next() * 257 + next()) % copy.length;
        copy[at] = (copy[at] ?? 0) ^ (1 << next() % 8);
        const got = audioDuration(copy);
        if (got) expect(Number.isSafeInteger(got.ms) && got.ms >= 0).toBe(true);
      }
    }
  });

  it("finishes on 25 MB of random or adversarial bytes behind every format's magic", () => {
    const size = 25 * 1024 * 1024;
    const random = noise(size, 12345);
    const prefixes = [
      new Uint8Array(0),
      concat(ascii("RIFF"), [0, 0, 0, 0], ascii("WAVE")),
      ascii("OggS"),
      [0x1a, 0x45, 0xdf, 0xa3, 0x80, 0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
      concat([0, 0, 0, 16], ascii("ftypisom"), [0, 0, 0, 0]),
      id3v2(10),
      flacFile({ samples: 0 }).subarray(0, 62),
      mp3File({ frames: 2 }),
    ];
    const fillers = [random, new Uint8Array(size).fill(0xff), new Uint8Array(size), repeat([0xff, 0xfb, 0x90, 0x00], size), repeat(ascii("OggS"), size), repeat([0x1f, 0x43, 0xb6, 0x75], size)];
    for (const filler of fillers) {
      for (const prefix of prefixes) {
        const input = filler.slice();
        input.set(prefix);
        const got = audioDuration(input);
        if (got) expect(Number.isSafeInteger(got.ms)).toBe(true);
      }
    }
  }, 120_000);
});

function repeat(pattern: number[] | Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += pattern.length) out.set(Array.from(pattern).slice(0, size - i), i);
  return out;
}
