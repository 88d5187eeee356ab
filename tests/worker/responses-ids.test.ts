import { describe, expect, it } from "vitest";
import { newResponseId, responseNode } from "../../worker/src/responses/ids.ts";

const SECRET = "test-master-secret";

describe("stored-response ids", () => {
  it("name the node that stores the response, for the organisation it was made for", async () => {
    const id = await newResponseId(SECRET, "ten_a", "gpu-fra-1");
    expect(id).toMatch(/^resp_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}$/);
    expect(await responseNode(SECRET, "ten_a", id)).toBe("gpu-fra-1");
    expect(await newResponseId(SECRET, "ten_a", "gpu-fra-1")).not.toBe(id);
  });

  it("are refused for another organisation, a forged node, a forged tag, another secret and garbage", async () => {
    const id = await newResponseId(SECRET, "ten_a", "gpu-fra-1");
    expect(await responseNode(SECRET, "ten_b", id)).toBeNull();
    const [, random, tag] = id.split(".");
    const otherNode = `resp_${btoa("gpu-sin-1").replace(/=+$/, "")}.${random}.${tag}`;
    expect(await responseNode(SECRET, "ten_a", otherNode)).toBeNull();
    const flipped = id.slice(0, -1) + (id.endsWith("A") ? "B" : "A");
    expect(await responseNode(SECRET, "ten_a", flipped)).toBeNull();
    expect(await responseNode("another-secret", "ten_a", id)).toBeNull();
    for (const junk of ["resp_abc", "", "resp_..", "chatcmpl-123", `${id}.x`]) expect(await responseNode(SECRET, "ten_a", junk)).toBeNull();
  });
});
