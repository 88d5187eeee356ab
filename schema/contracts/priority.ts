/**
 * The scheduling rank the gateway gives a request (worker/src/priority/class.ts), carried to the
 * backplane next to the request signature (schema/contracts/signing.ts) and turned there into vLLM's
 * `priority` body field on engines with priority scheduling (docs/priority.md).
 *
 * Header `x-switchyard-priority-rank: <rank>.<hex hmac>` where the MAC is
 * `HMAC-SHA256(node key, "switchyard-priority\n<nonce>\n<rank>")`. Binding the rank to the request's
 * nonce (itself covered by the request signature, and never accepted twice) means the header cannot be
 * forged without the node secret, changed on a captured request, or moved onto another one. It is a
 * separate MAC rather than a line of the request signature so gateways and backplanes of different
 * versions keep verifying each other: an older backplane ignores the header, and a request without it
 * runs at the engine's default priority.
 */

import type { SigningKey } from "./signing.ts";

/** Header carrying the signed rank. */
export const PRIORITY_RANK_HEADER = "x-switchyard-priority-rank";

/**
 * The rank a priority-scheduled engine gives a request that came without one (an older gateway, a
 * non-inference route): standard without a reservation, the middle of the scale
 * (worker/src/priority/class.ts `priorityRank`), so it neither jumps nor trails the gateway's classes.
 */
export const DEFAULT_PRIORITY_RANK = 3;

/** Ranks are small non-negative integers (0 runs first). */
export const MAX_PRIORITY_RANK = 99;

const encoder = new TextEncoder();
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const VALUE = /^(\d{1,2})\.([0-9a-f]{64})$/;

function message(nonce: string, rank: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(encoder.encode(`switchyard-priority\n${nonce}\n${rank}`));
}

/** The header value for `rank` on the request signed with `nonce`. */
export async function signPriorityRank(key: SigningKey, nonce: string, rank: number): Promise<string> {
  if (!Number.isInteger(rank) || rank < 0 || rank > MAX_PRIORITY_RANK) throw new RangeError(`priority rank ${rank} is outside 0..${MAX_PRIORITY_RANK}`);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, message(nonce, rank)));
  let hex = "";
  for (const b of mac) hex += HEX[b];
  return `${rank}.${hex}`;
}

/**
 * The rank in a received header when its MAC matches the request's (already verified) nonce; null when
 * the header is absent, malformed or forged (the request then runs without a gateway rank). WebCrypto's
 * `verify` compares in constant time.
 */
export async function verifyPriorityRank(key: SigningKey, nonce: string, value: string | null | undefined): Promise<number | null> {
  const m = value ? VALUE.exec(value) : null;
  if (!m?.[1] || !m[2]) return null;
  const rank = Number(m[1]);
  const mac = new Uint8Array(32);
  for (let i = 0; i < 32; i++) mac[i] = Number.parseInt(m[2].slice(i * 2, i * 2 + 2), 16);
  return (await crypto.subtle.verify("HMAC", key, mac, message(nonce, rank))) ? rank : null;
}
