/**
 * Worker-to-backplane request signing (HMAC-SHA256), shared by both sides.
 *
 * The signed string is `v2\n<METHOD>\n<path with query>\n<unix seconds>\n<nonce>\n<hex sha256 of body>`,
 * sent as `x-switchyard-signature: v2=<hex hmac>`. The nonce (128 random bits, 32 hex digits, fresh
 * for every request, retries included) lets the verifier refuse a captured request played again:
 * it remembers each nonce it accepted until the request's timestamp leaves the skew window
 * (`nonceTtlSeconds`), after which the timestamp check refuses the request anyway. The old `v1`
 * scheme had no nonce and is refused (`outdated`), so a downgrade cannot bring replays back.
 * Only WebCrypto is used so the same code runs in workerd and in Node.
 */

/** Header carrying the id of the node the request is meant for. */
export const NODE_HEADER = "x-switchyard-node";
/** Header carrying the signing time in unix seconds. */
export const TIMESTAMP_HEADER = "x-switchyard-timestamp";
/** Header carrying `v2=<hex hmac>`. */
export const SIGNATURE_HEADER = "x-switchyard-signature";
/** Header carrying the request's nonce: 32 lowercase hex digits (128 random bits), never reused. */
export const NONCE_HEADER = "x-switchyard-nonce";
/** Header carrying the gateway's request id, echoed in logs on both sides. */
export const REQUEST_ID_HEADER = "x-request-id";
/** Requests signed further than this from the verifier's clock are rejected. */
export const MAX_CLOCK_SKEW_SECONDS = 60;

const encoder = new TextEncoder();

/** An imported HMAC key (WebCrypto's CryptoKey, named so it types the same in workerd and Node). */
export type SigningKey = Awaited<ReturnType<typeof crypto.subtle.importKey>>;

// Two hex digits per byte value, built once: formatting each byte was a visible share of signing.
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function toHex(buffer: ArrayBuffer): string {
  const bytes = new Uint8Array(buffer);
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i] ?? 0];
  return out;
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | null {
  if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Hex SHA-256 of a body (empty string for no body). */
export async function sha256Hex(body: string | Uint8Array<ArrayBuffer>): Promise<string> {
  const data = typeof body === "string" ? encoder.encode(body) : body;
  return toHex(await crypto.subtle.digest("SHA-256", data));
}

/** Imports a shared secret as an HMAC-SHA256 key usable for signing and verifying. */
export async function importSigningKey(secret: string): Promise<SigningKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

const NONCE = /^[0-9a-f]{32}$/;

function canonical(method: string, path: string, timestamp: string, nonce: string, bodyHash: string): string {
  return `v2\n${method.toUpperCase()}\n${path}\n${timestamp}\n${nonce}\n${bodyHash}`;
}

/** A fresh nonce: 128 random bits as 32 hex digits. */
export function newNonce(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)).buffer);
}

/** What a signer puts on the request. */
export interface SignedHeaders {
  [TIMESTAMP_HEADER]: string;
  [NONCE_HEADER]: string;
  [SIGNATURE_HEADER]: string;
}

/** Signs a request with a fresh nonce (or `nonce`, for tests); `path` includes the query string. */
export async function signRequest(
  key: SigningKey,
  method: string,
  path: string,
  body: string | Uint8Array<ArrayBuffer>,
  nowSeconds: number = Math.floor(Date.now() / 1000),
  nonce: string = newNonce(),
): Promise<SignedHeaders> {
  const timestamp = String(nowSeconds);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(canonical(method, path, timestamp, nonce, await sha256Hex(body))));
  return { [TIMESTAMP_HEADER]: timestamp, [NONCE_HEADER]: nonce, [SIGNATURE_HEADER]: `v2=${toHex(mac)}` };
}

/** The signature headers of a received request, as read (absent ones null or undefined). */
export interface ReceivedSignature {
  timestamp: string | null | undefined;
  nonce: string | null | undefined;
  signature: string | null | undefined;
}

/**
 * Why a signature was refused; `ok` when it was accepted. `outdated`: signed with the old `v1`
 * scheme (no nonce). `replayed` is never returned here: the caller decides it with its nonce store.
 */
export type VerifyOutcome = "ok" | "missing" | "malformed" | "outdated" | "stale" | "mismatch" | "replayed";

/**
 * Verifies a signed request's MAC and timestamp (not yet its nonce's freshness: on `ok` the caller
 * must still claim the nonce, see `nonceTtlSeconds`). The MAC comparison is WebCrypto's `verify`,
 * which is constant-time.
 */
export async function verifyRequest(
  key: SigningKey,
  method: string,
  path: string,
  body: string | Uint8Array<ArrayBuffer>,
  received: ReceivedSignature,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): Promise<VerifyOutcome> {
  const { timestamp, nonce, signature } = received;
  if (signature?.startsWith("v1=")) return "outdated";
  if (!timestamp || !signature || !nonce) return "missing";
  if (!/^\d{1,12}$/.test(timestamp) || !signature.startsWith("v2=") || !NONCE.test(nonce)) return "malformed";
  const mac = fromHex(signature.slice(3));
  if (!mac || mac.length !== 32) return "malformed";
  if (Math.abs(nowSeconds - Number(timestamp)) > MAX_CLOCK_SKEW_SECONDS) return "stale";
  const data = encoder.encode(canonical(method, path, timestamp, nonce, await sha256Hex(body)));
  return (await crypto.subtle.verify("HMAC", key, mac, data)) ? "ok" : "mismatch";
}

/**
 * How long a verifier must remember an accepted nonce: until the request's timestamp is more than
 * MAX_CLOCK_SKEW_SECONDS in the past, when the timestamp check refuses it by itself. At least 1 s.
 */
export function nonceTtlSeconds(timestamp: string, nowSeconds: number = Math.floor(Date.now() / 1000)): number {
  return Math.max(1, Number(timestamp) + MAX_CLOCK_SKEW_SECONDS + 1 - nowSeconds);
}

/**
 * Derives a node's shared secret from the gateway's master secret, so no node secret is ever stored:
 * `hex(HMAC-SHA256(master, "switchyard-node:" + nodeId + ":" + version))`. Bumping the node's
 * `secret_version` rotates its secret.
 */
export async function deriveNodeSecret(masterSecret: string, nodeId: string, version: number): Promise<string> {
  const key = await importSigningKey(masterSecret);
  return toHex(await crypto.subtle.sign("HMAC", key, encoder.encode(`switchyard-node:${nodeId}:${version}`)));
}
