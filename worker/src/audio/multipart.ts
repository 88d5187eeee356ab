/**
 * multipart/form-data (RFC 7578) for audio uploads, without copies: the parser returns views into
 * the request's bytes, and the encoder writes the form the node receives in one buffer. An isolate
 * has 128 MB; the web's FormData would hold a 25 MB upload four times over (the body, the parsed
 * File, its bytes, the re-encoded form), this twice (the body and the form sent on).
 */
import { ApiError } from "../errors.ts";

/** A text field or a file of a form; a file's bytes are a view into the body it was parsed from. */
export type FormPart = { name: string; value: string } | { name: string; filename: string; contentType: string; bytes: Uint8Array };

const CR = 13;
const LF = 10;
const DASH = 45;
const encoder = new TextEncoder();
const utf8 = new TextDecoder();
const latin1 = new TextDecoder("latin1");

function invalid(message: string): ApiError {
  return new ApiError("invalid_value", `We could not parse the multipart/form-data body of your request: ${message}. Send the audio as the 'file' field and the model as 'model'.`);
}

/** The boundary of a `multipart/form-data` content type, or null when it names none. */
export function boundaryOf(contentType: string): string | null {
  const match = /^multipart\/form-data\s*;(?:.*;)?\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))\s*(?:;|$)/i.exec(contentType);
  return match ? (match[1] ?? match[2] ?? null) : null;
}

/** The first index of `needle` in `haystack` at or after `from`, or -1 (native search for its first byte, then a compare). */
function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0] ?? 0;
  const last = haystack.length - needle.length;
  for (let i = haystack.indexOf(first, from); i !== -1 && i <= last; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** A header parameter (`name="file"`), quoted or not; `filename` is not mistaken for `name`. */
function param(header: string, key: string): string | null {
  const match = new RegExp(`;\\s*${key}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]*))`, "i").exec(header);
  if (!match) return null;
  return match[1] !== undefined ? match[1].replace(/\\(.)/g, "$1") : (match[2] ?? null);
}

/**
 * Parses a form: every part between `--boundary` lines, CRLF line ends as RFC 7578 and the OpenAI
 * clients write them. A part without a `Content-Disposition: form-data; name=…` header, a body that
 * never closes its last part, or more than `maxParts` parts is refused (400).
 */
export function parseMultipart(body: Uint8Array, boundary: string, maxParts = 64): FormPart[] {
  const dashBoundary = encoder.encode(`--${boundary}`);
  const delimiter = encoder.encode(`\r\n--${boundary}`);
  // The first boundary line opens the body (or follows a preamble, which is ignored).
  let at = body.length >= dashBoundary.length && dashBoundary.every((b, i) => body[i] === b) ? 0 : indexOf(body, delimiter, 0) + 2;
  if (at < 0 || at === 1) throw invalid("it has no part opened by the boundary named in its Content-Type");
  const parts: FormPart[] = [];
  for (;;) {
    at += dashBoundary.length;
    if (body[at] === DASH && body[at + 1] === DASH) return parts; // the closing `--boundary--`
    // Transport padding (spaces, tabs), then the line's CRLF.
    while (body[at] === 32 || body[at] === 9) at++;
    if (body[at] !== CR || body[at + 1] !== LF) throw invalid("a boundary line does not end with CRLF");
    at += 2;
    const headersEnd = indexOf(body, encoder.encode("\r\n\r\n"), at - 2);
    if (headersEnd === -1) throw invalid("a part's headers never end");
    const headers = headersEnd < at ? "" : latin1.decode(body.subarray(at, headersEnd));
    const next = indexOf(body, delimiter, headersEnd + 2);
    if (next === -1) throw invalid("its last part is never closed by the boundary");
    const content = body.subarray(headersEnd + 4, next);
    const disposition = headers.split("\r\n").find((h) => /^content-disposition\s*:/i.test(h));
    if (!disposition || !/:\s*form-data\s*(;|$)/i.test(disposition)) throw invalid("a part has no 'Content-Disposition: form-data' header");
    const name = param(disposition, "name");
    if (name === null || name === "") throw invalid("a part has no name");
    const filename = param(disposition, "filename");
    if (filename !== null) {
      const type = headers.split("\r\n").find((h) => /^content-type\s*:/i.test(h));
      parts.push({ name, filename, contentType: type ? type.slice(type.indexOf(":") + 1).trim() : "application/octet-stream", bytes: content });
    } else {
      parts.push({ name, value: utf8.decode(content) });
    }
    if (parts.length > maxParts) throw invalid(`it has more than ${maxParts} parts`);
    at = next + 2;
  }
}

/** A header parameter value, quoted (RFC 7578 §4.2: quotes and line breaks percent-encoded, as browsers do). */
function quoted(value: string): string {
  return `"${value.replace(/"/g, "%22").replace(/\r/g, "%0D").replace(/\n/g, "%0A")}"`;
}

/** Encodes a form in one buffer with a fresh random boundary; answers it with its content type. */
export function encodeMultipart(parts: FormPart[]): { body: Uint8Array<ArrayBuffer>; contentType: string } {
  const boundary = `switchyard-${[...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  const pieces: Uint8Array[] = [];
  for (const part of parts) {
    const head =
      "value" in part
        ? `--${boundary}\r\nContent-Disposition: form-data; name=${quoted(part.name)}\r\n\r\n`
        : `--${boundary}\r\nContent-Disposition: form-data; name=${quoted(part.name)}; filename=${quoted(part.filename)}\r\nContent-Type: ${part.contentType.replace(/[\r\n]/g, "")}\r\n\r\n`;
    pieces.push(encoder.encode(head), "value" in part ? encoder.encode(part.value) : part.bytes, encoder.encode("\r\n"));
  }
  pieces.push(encoder.encode(`--${boundary}--\r\n`));
  const body = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    body.set(piece, offset);
    offset += piece.length;
  }
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}
