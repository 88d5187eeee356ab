/**
 * API key format and hashing, shared by the worker and the Node admin tools (WebCrypto only).
 * A key is `sk-sy-` followed by 43 base64url characters (256 random bits). Only its SHA-256 and
 * its first 12 characters (for display) are ever stored.
 */

/** Prefix every Switchyard API key starts with; secret scanners can match on it. */
export const KEY_PREFIX = "sk-sy-";
const KEY_PATTERN = /^sk-sy-[A-Za-z0-9_-]{43}$/;
/** How many leading characters of a key are stored and shown. */
export const VISIBLE_PREFIX_LENGTH = 12;

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** A new random API key. */
export function generateApiKey(): string {
  return KEY_PREFIX + base64url(crypto.getRandomValues(new Uint8Array(32)));
}

/** True when the string has the shape of a Switchyard key (checked before any lookup). */
export function looksLikeApiKey(value: string): boolean {
  return KEY_PATTERN.test(value);
}

/** Hex SHA-256 of a key: the value stored in `api_keys.hash` and used as the cache key. */
export async function hashApiKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  let out = "";
  for (const byte of new Uint8Array(digest)) out += byte.toString(16).padStart(2, "0");
  return out;
}

// The hashes of keys this isolate saw lately: hashing is a visible share of a request's CPU, and a
// client sends the same key again and again. Held in the isolate's memory only, like the request
// itself; bounded, oldest first out.
const MAX_RECENT_HASHES = 10_000;
const recentHashes = new Map<string, string>();

/** `hashApiKey`, remembered for the keys this isolate saw lately (the request path's lookup). */
export async function hashApiKeyCached(key: string): Promise<string> {
  const known = recentHashes.get(key);
  if (known !== undefined) return known;
  const hash = await hashApiKey(key);
  if (recentHashes.size >= MAX_RECENT_HASHES) {
    const oldest = recentHashes.keys().next();
    if (oldest.done !== true) recentHashes.delete(oldest.value);
  }
  recentHashes.set(key, hash);
  return hash;
}

/** The part of a key that may be displayed. */
export function visiblePrefix(key: string): string {
  return key.slice(0, VISIBLE_PREFIX_LENGTH);
}

/** Extracts the bearer token from an Authorization header, or null. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? null;
}
