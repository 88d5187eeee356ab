// Opus packet durations from the TOC byte (RFC 6716 §3.1), shared by the Ogg and WebM readers.

/** Samples at 48 kHz that an Opus packet decodes to (RFC 6716 §3.1); 0 for a malformed packet. */
export function opusSamples(toc: number, second: number, length: number): number {
  if (length < 1) return 0;
  const config = toc >> 3;
  const frame = config < 12 ? [480, 960, 1920, 2880][config & 3] : config < 16 ? [480, 960][config & 1] : [120, 240, 480, 960][config & 3];
  const code = toc & 3;
  const frames = code === 0 ? 1 : code < 3 ? 2 : length < 2 ? 0 : second & 0x3f;
  const total = frames * (frame ?? 0);
  return total <= 5760 ? total : 0; // at most 120 ms a packet
}
