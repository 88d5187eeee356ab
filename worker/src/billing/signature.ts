/**
 * Stripe webhook signatures (docs.stripe.com/webhooks/signature; stripe-node `src/Webhooks.ts`):
 * `Stripe-Signature: t=<unix s>,v1=<hex>,v1=<hex>…`, each v1 = hex(HMAC-SHA256(endpoint secret,
 * `${t}.${raw body}`)). Several v1 values appear while a secret is being rolled; any one may match.
 */
import { ApiError } from "../errors.ts";

/** Stripe's default tolerance (`DEFAULT_TOLERANCE`) between the signature's timestamp and now. */
export const TOLERANCE_SECONDS = 300;

function invalid(message: string): ApiError {
  return new ApiError("invalid_signature", message, { param: "Stripe-Signature" });
}

/** Parses the header into its timestamp and v1 candidates (other schemes such as v0 are ignored). */
function parseHeader(header: string): { t: number; v1: string[] } {
  let t: number | null = null;
  const v1: string[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (name === "t" && /^\d+$/.test(value)) t = Number(value);
    else if (name === "v1") v1.push(value);
  }
  if (t === null) throw invalid("The Stripe-Signature header has no valid timestamp (t=…).");
  if (v1.length === 0) throw invalid("The Stripe-Signature header has no v1 signature.");
  return { t, v1 };
}

/** Decodes a 64-character hex SHA-256 signature; null when it is not one. */
function fromHex(hex: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * Throws 400 `invalid_signature` unless `header` signs `body` with `secret` within the tolerance.
 * `crypto.subtle.verify` compares in constant time.
 */
export async function verifyStripeSignature(body: string, header: string | undefined, secret: string, nowMs = Date.now()): Promise<void> {
  if (!secret) throw invalid("Stripe webhooks are not configured on this gateway (STRIPE_WEBHOOK_SECRET is empty).");
  if (!header) throw invalid("The Stripe-Signature header is missing.");
  const { t, v1 } = parseHeader(header);
  if (Math.abs(nowMs / 1000 - t) > TOLERANCE_SECONDS) throw invalid(`The Stripe-Signature timestamp is more than ${TOLERANCE_SECONDS} s from now.`);
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const payload = enc.encode(`${t}.${body}`);
  for (const candidate of v1) {
    const signature = fromHex(candidate);
    if (signature !== null && (await crypto.subtle.verify("HMAC", key, signature, payload))) return;
  }
  throw invalid("No v1 signature in the Stripe-Signature header matches the body.");
}
