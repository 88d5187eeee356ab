/**
 * Audio uploads (`POST /v1/audio/transcriptions` and `/translations`) arrive as multipart/form-data.
 * The signature covers the body but not its content-type header, so the boundary is read from the
 * signed body itself (its first line, `--<boundary>`), never from the header: what reaches the engine
 * is exactly what the gateway signed, parsed as the gateway encoded it.
 */

/** The speech-to-text paths. */
export const AUDIO_PATHS = new Set(["/v1/audio/transcriptions", "/v1/audio/translations"]);

/** Audio bodies: a 25 MB file and the form around it (the gateway's own limit, audio/validate.ts). */
export const MAX_AUDIO_BODY_BYTES = 25 * 1024 * 1024 + 64 * 1024;

// RFC 2046 boundary characters (bcharsnospace, plus inner spaces), 1 to 70 of them.
const BOUNDARY = /^--([0-9A-Za-z'()+_,./:=?-][0-9A-Za-z'()+_,./:=? -]{0,68}[0-9A-Za-z'()+_,./:=?-]|[0-9A-Za-z'()+_,./:=?-])\r\n/;

/** The content type of a multipart body, from the boundary its first line opens with; null when it opens with none. */
export function multipartContentType(body: Uint8Array): string | null {
  const head = Buffer.from(body.buffer, body.byteOffset, Math.min(body.byteLength, 80)).toString("latin1");
  const boundary = BOUNDARY.exec(head)?.[1];
  return boundary === undefined ? null : `multipart/form-data; boundary=${boundary}`;
}

/** The fields the node routes on: the model and whether the answer streams; null when the form is not readable or has no model. */
export async function readAudioForm(body: Uint8Array): Promise<{ model: string; stream: boolean; contentType: string } | null> {
  const contentType = multipartContentType(body);
  if (contentType === null) return null;
  try {
    const form = await new Response(body, { headers: { "content-type": contentType } }).formData();
    const model = form.get("model");
    const stream = form.get("stream");
    if (typeof model !== "string" || model === "") return null;
    return { model, stream: typeof stream === "string" && ["true", "1"].includes(stream.trim().toLowerCase()), contentType };
  } catch {
    return null;
  }
}
