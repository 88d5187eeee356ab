import { describe, expect, it } from "vitest";
import { createHmac } from "node:crypto";
import { NonceStore } from "../../backplane/src/proxy/replay.ts";
import { deriveNodeSecret, importSigningKey, nonceTtlSeconds, sha256Hex, signRequest, verifyRequest } from "../../schema/contracts/signing.ts";

describe("worker-to-backplane signing", () => {
  it("verifies what it signed, and only that", async () => {
    const key = await importSigningKey("s".repeat(64));
    const now = 1_800_000_000;
    const h = await signRequest(key, "POST", "/v1/chat/completions", "{}", now);
    const nonce = h["x-switchyard-nonce"];
    expect(nonce).toMatch(/^[0-9a-f]{32}$/);
    const verify = (method: string, path: string, body: string, ts: string | null = h["x-switchyard-timestamp"], sig: string | null = h["x-switchyard-signature"], n: string | null = nonce) =>
      verifyRequest(key, method, path, body, { timestamp: ts, nonce: n, signature: sig }, now);
    expect(await verify("POST", "/v1/chat/completions", "{}")).toBe("ok");
    expect(await verify("POST", "/v1/chat/completions", "{ }")).toBe("mismatch");
    expect(await verify("POST", "/v1/completions", "{}")).toBe("mismatch");
    expect(await verify("GET", "/v1/chat/completions", "{}")).toBe("mismatch");
    expect(await verify("POST", "/v1/chat/completions", "{}", String(now + 1))).toBe("mismatch");
    expect(await verify("POST", "/v1/chat/completions", "{}", null, null)).toBe("missing");
    expect(await verify("POST", "/v1/chat/completions", "{}", "abc")).toBe("malformed");
    expect(await verify("POST", "/v1/chat/completions", "{}", h["x-switchyard-timestamp"], "v2=zz")).toBe("malformed");
    expect(await verify("POST", "/v1/chat/completions", "{}", undefined, undefined, "f".repeat(32))).toBe("mismatch");
    expect(await verify("POST", "/v1/chat/completions", "{}", undefined, undefined, null)).toBe("missing");
    expect(await verify("POST", "/v1/chat/completions", "{}", undefined, undefined, "abc")).toBe("malformed");
    expect(await verifyRequest(key, "POST", "/v1/chat/completions", "{}", { timestamp: h["x-switchyard-timestamp"], nonce, signature: h["x-switchyard-signature"] }, now + 61)).toBe("stale");
  });

  it("gives every request its own nonce", async () => {
    const key = await importSigningKey("s".repeat(64));
    const a = await signRequest(key, "POST", "/p", "{}");
    const b = await signRequest(key, "POST", "/p", "{}");
    expect(a["x-switchyard-nonce"]).not.toBe(b["x-switchyard-nonce"]);
    expect(a["x-switchyard-signature"]).not.toBe(b["x-switchyard-signature"]);
  });

  it("refuses a request signed with the old v1 scheme (no nonce), even when its MAC is right", async () => {
    const secret = "s".repeat(64);
    const key = await importSigningKey(secret);
    const now = 1_800_000_000;
    const v1 = createHmac("sha256", secret).update(`v1\nPOST\n/p\n${now}\n${await sha256Hex("{}")}`).digest("hex");
    expect(await verifyRequest(key, "POST", "/p", "{}", { timestamp: String(now), nonce: undefined, signature: `v1=${v1}` }, now)).toBe("outdated");
    expect(await verifyRequest(key, "POST", "/p", "{}", { timestamp: String(now), nonce: "0".repeat(32), signature: `v1=${v1}` }, now)).toBe("outdated");
    expect(await verifyRequest(key, "POST", "/p", "{}", { timestamp: String(now), nonce: "0".repeat(32), signature: `v2=${v1}` }, now)).toBe("mismatch");
  });

  it("remembers a nonce until its timestamp leaves the window, and refuses new ones when full instead of forgetting", () => {
    const now = 1_800_000_000;
    expect(nonceTtlSeconds(String(now), now)).toBe(61);
    expect(nonceTtlSeconds(String(now - 60), now)).toBe(1);
    const store = new NonceStore(2);
    const t = now * 1000;
    expect(store.claim("a", t + 61_000, t)).toBe("fresh");
    expect(store.claim("a", t + 61_000, t + 5_000)).toBe("replayed");
    expect(store.claim("b", t + 10_000, t)).toBe("fresh");
    expect(store.claim("c", t + 61_000, t + 1_000)).toBe("full");
    // "b" expires: its room is reused; "a" is still remembered.
    expect(store.claim("c", t + 61_000, t + 10_000)).toBe("fresh");
    expect(store.claim("a", t + 61_000, t + 60_000)).toBe("replayed");
    expect(store.claim("a", t + 200_000, t + 61_000)).toBe("fresh");
  });

  it("derives a distinct, stable secret per node and version", async () => {
    const a1 = await deriveNodeSecret("master", "node-a", 1);
    expect(a1).toMatch(/^[0-9a-f]{64}$/);
    expect(await deriveNodeSecret("master", "node-a", 1)).toBe(a1);
    expect(await deriveNodeSecret("master", "node-a", 2)).not.toBe(a1);
    expect(await deriveNodeSecret("master", "node-b", 1)).not.toBe(a1);
    expect(await deriveNodeSecret("other", "node-a", 1)).not.toBe(a1);
  });
});
