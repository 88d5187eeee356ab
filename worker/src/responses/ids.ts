import { importSigningKey, type SigningKey } from "../../../schema/contracts/signing.ts";

/**
 * Stored-response ids made by the gateway (Responses API). vLLM keeps a stored response in the
 * memory of the engine that made it and takes the id from the request's `request_id`, so the gateway
 * chooses the id: `resp_<node>.<random>.<tag>`, where `<node>` is the serving node's id (base64url),
 * `<random>` 96 random bits and `<tag>` a 128-bit HMAC of the tenant, the node and the random part
 * under a key derived from NODE_SIGNING_SECRET. A call naming the id is routed to that node with no
 * lookup (no state to write on the request path, nothing to race with a client that polls at once),
 * and an id is only valid for the tenant it was made for: another tenant's id, or a forged one, is
 * answered like an unknown id.
 */

const encoder = new TextEncoder();
const ID = /^resp_([A-Za-z0-9_-]{1,300})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22})$/;

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64url(text: string): string | null {
  try {
    const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
}

const keys = new Map<string, Promise<SigningKey>>();

/** The HMAC key of response ids, derived once per isolate from the master secret. */
function idKey(masterSecret: string): Promise<SigningKey> {
  let key = keys.get(masterSecret);
  if (!key) {
    key = importSigningKey(masterSecret)
      .then((master) => crypto.subtle.sign("HMAC", master, encoder.encode("switchyard-response-ids:v1")))
      .then((raw) => crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]));
    key.catch(() => keys.delete(masterSecret));
    keys.set(masterSecret, key);
  }
  return key;
}

async function tag(masterSecret: string, tenantId: string, nodePart: string, randomPart: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await idKey(masterSecret), encoder.encode(`${tenantId}\n${nodePart}\n${randomPart}`));
  return base64url(new Uint8Array(mac).subarray(0, 16));
}

/** A new response id for `tenantId`, served by `nodeId`. */
export async function newResponseId(masterSecret: string, tenantId: string, nodeId: string): Promise<string> {
  const nodePart = base64url(encoder.encode(nodeId));
  const randomPart = base64url(crypto.getRandomValues(new Uint8Array(12)));
  return `resp_${nodePart}.${randomPart}.${await tag(masterSecret, tenantId, nodePart, randomPart)}`;
}

/** Constant-time comparison of two strings of the same length (the tags are fixed-length). */
function sameTag(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** The node that holds the response `id`, when `id` is a response id the gateway made for `tenantId`; null otherwise. */
export async function responseNode(masterSecret: string, tenantId: string, id: string): Promise<string | null> {
  const match = ID.exec(id);
  if (!match?.[1] || !match[2] || !match[3]) return null;
  const expected = await tag(masterSecret, tenantId, match[1], match[2]);
  if (!sameTag(expected, match[3])) return null;
  return fromBase64url(match[1]);
}
