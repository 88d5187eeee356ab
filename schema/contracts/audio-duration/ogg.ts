// Ogg Opus and Ogg Vorbis. Each link of a chained file is measured on its own and the links add up.
// A link's duration is the larger of its last granule position and what its packets count (see
// oggLinkSamples), less Opus pre-skip. Packets are reassembled from lacing values: a continued packet
// whose start was never seen is dropped, and so is one never finished. Lost capture is resynced on the
// next "OggS", as libogg does; a granule position beyond 2^53 means no honest duration (null).

import { u8, u16le, u32le, ascii, fourcc, find4, toMs } from "./bytes.ts";
import { opusSamples } from "./opus.ts";

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

/** The duration in ms of an Ogg Opus or Ogg Vorbis file (chained links add up), or null. */
export function ogg(b: Uint8Array): number | null {
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
