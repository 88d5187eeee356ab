// The duration of an uploaded audio file, read from its container without decoding, so that a
// transcription can be priced before it runs and billed by audio seconds. It must never come out
// SHORTER than what a decoder (libsndfile, libFLAC, mpg123, libopusfile, ffmpeg) would play: wherever
// a container states a duration in more than one place, or its packets can be counted, the largest
// figure wins, and a figure a file merely claims never lowers the count of what it carries. Input is
// untrusted (up to 25 MB): every loop advances, scans are linear, nothing throws out of here.
// Plain Uint8Array/DataView only: this runs in workerd and in Node.

import { ascii, fourcc, u32be, u8 } from "./audio-duration/bytes.ts";
import { flac } from "./audio-duration/flac.ts";
import { mp3 } from "./audio-duration/mp3.ts";
import { mp4 } from "./audio-duration/mp4.ts";
import { ogg } from "./audio-duration/ogg.ts";
import { wav } from "./audio-duration/wav.ts";
import { webm } from "./audio-duration/webm.ts";

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

/** The box types an MP4 file may start with (the type field is at offset 4). */
const MP4_FIRST_BOXES = new Set(["ftyp", "moov", "mdat", "free", "skip", "wide"].map(fourcc));

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
