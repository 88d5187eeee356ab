// MP4/M4A (ISO base media file format), including fragmented files. For each audio track (hdlr
// "soun"), the largest of its mdhd duration, the sum of its sample table (stts) and the sum of its
// fragments' trun sample durations (falling back to tfhd, then trex defaults); the longest audio track
// wins. The movie-level mvhd and mehd durations are used only when no track says it is audio. A
// duration of all ones is "unknown"; a box of size 0 runs to the end of its parent (or the file).

import { u8, u24be, u32be, u64be, fourcc, toMs, positiveMs } from "./bytes.ts";

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

/** The duration in ms of an MP4/M4A (ISO BMFF) file, fragmented or not, or null. */
export function mp4(b: Uint8Array): number | null {
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
