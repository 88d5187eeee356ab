/**
 * Prompt tokens of an image input, by a deterministic rule modelled on Qwen2-VL (one token per
 * 28×28 pixel patch, between 4 and 1280 tokens per image, its processor's defaults):
 * - a `data:` URL whose PNG, JPEG, GIF or WebP header gives the size: ceil(w/28) × ceil(h/28),
 *   clamped to [4, 1280];
 * - any other URL (the simulator never fetches one) or an unreadable image: 256 tokens, a
 *   448×448 image.
 */

/** Pixels per image token side. */
export const IMAGE_PATCH_PX = 28;
/** Token bounds of one image. */
export const IMAGE_TOKENS = { min: 4, max: 1280, fixed: 256 } as const;

/** Width and height read from an image file's header, or null when the format is not recognised. */
export function imageSize(bytes: Uint8Array): { width: number; height: number } | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ascii = (at: number, length: number) => String.fromCharCode(...bytes.subarray(at, at + length));
  // PNG: the IHDR chunk follows the 8-byte signature.
  if (bytes.length >= 24 && bytes[0] === 0x89 && ascii(1, 3) === "PNG") return { width: view.getUint32(16), height: view.getUint32(20) };
  if (bytes.length >= 10 && (ascii(0, 6) === "GIF87a" || ascii(0, 6) === "GIF89a")) {
    return { width: view.getUint16(6, true), height: view.getUint16(8, true) };
  }
  if (bytes.length >= 30 && ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") return webpSize(bytes, view, ascii(12, 4));
  if (bytes.length >= 4 && bytes[0] === 0xff && bytes[1] === 0xd8) return jpegSize(bytes, view);
  return null;
}

function webpSize(bytes: Uint8Array, view: DataView, chunk: string): { width: number; height: number } | null {
  const at = (i: number) => bytes[i] ?? 0;
  if (chunk === "VP8 ") return { width: view.getUint16(26, true) & 0x3fff, height: view.getUint16(28, true) & 0x3fff };
  if (chunk === "VP8L") {
    return { width: 1 + (at(21) | ((at(22) & 0x3f) << 8)), height: 1 + ((at(22) >> 6) | (at(23) << 2) | ((at(24) & 0x0f) << 10)) };
  }
  if (chunk === "VP8X") return { width: 1 + (at(24) | (at(25) << 8) | (at(26) << 16)), height: 1 + (at(27) | (at(28) << 8) | (at(29) << 16)) };
  return null;
}

/** Walks the JPEG segments to the first start-of-frame marker (SOF0-SOF15 except DHT, JPG, DAC). */
function jpegSize(bytes: Uint8Array, view: DataView): { width: number; height: number } | null {
  let i = 2;
  while (i + 9 < bytes.length) {
    if (bytes[i] !== 0xff) return null;
    const marker = bytes[i + 1] ?? 0;
    if (marker === 0xff) {
      i++;
      continue;
    }
    const length = view.getUint16(i + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { width: view.getUint16(i + 7), height: view.getUint16(i + 5) };
    }
    i += 2 + length;
  }
  return null;
}

/** The bytes of a base64 `data:` URL, or null for any other URL. */
function dataUrlBytes(url: string): Uint8Array | null {
  const match = /^data:[^,]*;base64,/i.exec(url);
  if (!match) return null;
  return Buffer.from(url.slice(match[0].length), "base64");
}

/** Prompt tokens of one image given by URL (see the rule above). */
export function imageTokens(url: string): number {
  const bytes = dataUrlBytes(url);
  const size = bytes === null ? null : imageSize(bytes);
  if (size === null || size.width === 0 || size.height === 0) return IMAGE_TOKENS.fixed;
  const patches = Math.ceil(size.width / IMAGE_PATCH_PX) * Math.ceil(size.height / IMAGE_PATCH_PX);
  return Math.min(IMAGE_TOKENS.max, Math.max(IMAGE_TOKENS.min, patches));
}
