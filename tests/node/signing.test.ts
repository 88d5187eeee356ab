import { describe, expect, it } from "vitest";
import { deriveNodeSecret, importSigningKey, signRequest, verifyRequest } from "../../schema/contracts/signing.ts";

describe("worker-to-backplane signing", () => {
  it("verifies what it signed, and only that", async () => {
    const key = await importSigningKey("s".repeat(64));
    const now = 1_800_000_000;
    const h = await signRequest(key, "POST", "/v1/chat/completions", "{}", now);
    const verify = (method: string, path: string, body: string, ts: string | null = h["x-switchyard-timestamp"], sig: string | null = h["x-switchyard-signature"]) =>
      verifyRequest(key, method, path, body, ts, sig, now);
    expect(await verify("POST", "/v1/chat/completions", "{}")).toBe("ok");
    expect(await verify("POST", "/v1/chat/completions", "{ }")).toBe("mismatch");
    expect(await verify("POST", "/v1/completions", "{}")).toBe("mismatch");
    expect(await verify("GET", "/v1/chat/completions", "{}")).toBe("mismatch");
    expect(await verify("POST", "/v1/chat/completions", "{}", String(now + 1))).toBe("mismatch");
    expect(await verify("POST", "/v1/chat/completions", "{}", null, null)).toBe("missing");
    expect(await verify("POST", "/v1/chat/completions", "{}", "abc")).toBe("malformed");
    expect(await verify("POST", "/v1/chat/completions", "{}", h["x-switchyard-timestamp"], "v1=zz")).toBe("malformed");
    expect(await verifyRequest(key, "POST", "/v1/chat/completions", "{}", h["x-switchyard-timestamp"], h["x-switchyard-signature"], now + 61)).toBe("stale");
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
