// WebM and Matroska. The largest of the Info Duration (scaled by TimecodeScale), the latest end of a
// block of the first audio track and the sum of that track's block durations (all tracks when the file
// has no Tracks; null when it has tracks but none is audio). A block lasts its BlockDuration if stated,
// else the track's DefaultDuration per laced frame, else (Opus) what its packets decode to, else the
// distance between the track's blocks (20 ms before there is one). The walk goes to the end of the file
// whatever the Segment's size says; a Segment-level element ends the Cluster it appears in, and after
// corrupt bytes the walk resyncs on the next Cluster ID, as ffmpeg does.

import { u8, u16be, ascii, find4, positiveMs } from "./bytes.ts";
import { opusSamples } from "./opus.ts";

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

/** The duration in ms of a WebM/Matroska file, or null. */
export function webm(b: Uint8Array): number | null {
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
