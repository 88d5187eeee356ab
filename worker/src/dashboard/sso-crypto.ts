/**
 * Keys derived from DASHBOARD_SECRET (HKDF-SHA-256, one label per use): AES-GCM for the tenants'
 * OpenID Connect client secrets at rest, HMAC for the single sign-on state cookie.
 */
import { ApiError } from "../errors.ts";

const enc = new TextEncoder();

function b64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

function requireSecret(secret: string): string {
  if (secret.length < 32) {
    throw new ApiError("not_configured", "Single sign-on needs the DASHBOARD_SECRET secret (at least 32 characters): `wrangler secret put DASHBOARD_SECRET` on Cloudflare, or DASHBOARD_SECRET in a self-hosted gateway's env file (docs/self-hosting.md); then try again.");
  }
  return secret;
}

async function derive(secret: string, label: string, usage: "aes" | "hmac"): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey("raw", enc.encode(requireSecret(secret)), "HKDF", false, ["deriveKey"]);
  const params = { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: enc.encode(label) };
  return usage === "aes"
    ? crypto.subtle.deriveKey(params, base, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"])
    : crypto.subtle.deriveKey(params, base, { name: "HMAC", hash: "SHA-256", length: 256 }, false, ["sign", "verify"]);
}

/** Encrypts a client secret for `sso_configs.client_secret_enc` (`v1.<iv>.<ciphertext>`), bound to its tenant. */
export async function sealClientSecret(secret: string, tenantId: string, plain: string): Promise<string> {
  const key = await derive(secret, "switchyard/dashboard/sso-client-secret", "aes");
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: enc.encode(tenantId) }, key, enc.encode(plain)));
  return `v1.${b64url(iv)}.${b64url(ct)}`;
}

/** Decrypts what sealClientSecret made; throws when DASHBOARD_SECRET changed or the row was tampered with. */
export async function openClientSecret(secret: string, tenantId: string, sealed: string): Promise<string> {
  const [version, iv, ct] = sealed.split(".");
  if (version !== "v1" || !iv || !ct) throw new Error("unknown client secret format");
  const key = await derive(secret, "switchyard/dashboard/sso-client-secret", "aes");
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromB64url(iv), additionalData: enc.encode(tenantId) }, key, fromB64url(ct));
  return new TextDecoder().decode(plain);
}

/** Signs a JSON value into `<payload>.<mac>` (the SSO state cookie). */
export async function signState(secret: string, value: unknown): Promise<string> {
  const key = await derive(secret, "switchyard/dashboard/sso-state", "hmac");
  const payload = b64url(enc.encode(JSON.stringify(value)));
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(payload)));
  return `${payload}.${b64url(mac)}`;
}

/** Verifies and parses what signState made; null when the signature does not match. */
export async function verifyState(secret: string, token: string): Promise<unknown> {
  const [payload, mac] = token.split(".");
  if (!payload || !mac) return null;
  const key = await derive(secret, "switchyard/dashboard/sso-state", "hmac");
  let ok: boolean;
  try {
    ok = await crypto.subtle.verify("HMAC", key, fromB64url(mac), enc.encode(payload));
  } catch {
    return null;
  }
  if (!ok) return null;
  try {
    return JSON.parse(new TextDecoder().decode(fromB64url(payload))) as unknown;
  } catch {
    return null;
  }
}
