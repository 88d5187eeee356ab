import { describe, expect, it } from "vitest";
import { decodeContribution, encodeContribution, tensorToFloat32 } from "../../schema/contracts/fedattn-tensors.ts";
import { checksum, simulatedKv } from "../../backplane/src/fedattn/kv.ts";
import { parseSimArgs } from "../../backplane/src/sim/index.ts";
import { simPost, useSimEngine } from "../support/sim-harness.ts";

// Switchyard's federated-attention routes on the simulated engine: /switchyard/fedattn/kv, /apply, /applied.

const start = useSimEngine();

async function kv(url: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${url}/switchyard/fedattn/kv`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

async function apply(url: string, message: Uint8Array): Promise<Response> {
  // A copy typed as backed by an ArrayBuffer, which fetch's body takes.
  return fetch(`${url}/switchyard/fedattn/apply`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: new Uint8Array(message) });
}

interface AppliedList {
  object: string;
  data: { block_start: number; block_end: number; dtype: string; weight: number; k_shape: number[]; v_shape: number[]; k_checksum: number; v_checksum: number; applied_at: string }[];
}

describe("simulated engine K/V routes", () => {
  it("exports the deterministic K/V of a block range as one float32 tensor message of weight 1", async () => {
    const sim = await start();
    const res = await kv(sim.url, { prompt: "hello there", block_start: 8, block_end: 15 });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(Number(res.headers.get("content-length"))).toBe(bytes.byteLength);
    const message = decodeContribution(bytes);
    expect(message).toMatchObject({ dtype: "float32", blockStart: 8, blockEnd: 15, weight: 1 });
    expect(message.k.shape).toEqual([8, 16, 64]);
    expect(message.v.shape).toEqual([8, 16, 64]);
    // The default model is the engine's first generate model, and its seed the engine's --seed (0).
    const expected = simulatedKv({ model: "sim-llama-8b", prompt: "hello there", blockStart: 8, blockEnd: 15 });
    expect(Array.from(tensorToFloat32(message.k))).toEqual(Array.from(expected.k));
    expect(Array.from(tensorToFloat32(message.v))).toEqual(Array.from(expected.v));

    const again = new Uint8Array(await (await kv(sim.url, { prompt: "hello there", block_start: 8, block_end: 15 })).arrayBuffer());
    expect(again).toEqual(bytes);
    const otherPrompt = new Uint8Array(await (await kv(sim.url, { prompt: "goodbye", block_start: 8, block_end: 15 })).arrayBuffer());
    expect(otherPrompt).not.toEqual(bytes);
  });

  it("honours shape, weight, dtype and model in the request, and --fedattn-shape as the engine's default", async () => {
    const sim = await start(parseSimArgs(["--fedattn-shape", "4x8", "--model", "a", "--model", "b"], {}));
    const byDefault = decodeContribution(new Uint8Array(await (await kv(sim.url, { prompt: "p", block_start: 0, block_end: 1 })).arrayBuffer()));
    expect(byDefault.k.shape).toEqual([2, 4, 8]);
    const res = await kv(sim.url, { model: "b", prompt: "p", block_start: 0, block_end: 1, shape: [3], weight: 2.5, dtype: "float16" });
    expect(res.status).toBe(200);
    const message = decodeContribution(new Uint8Array(await res.arrayBuffer()));
    expect(message).toMatchObject({ dtype: "float16", weight: 2.5 });
    expect(message.k.shape).toEqual([2, 3]);
    const expected = simulatedKv({ model: "b", prompt: "p", blockStart: 0, blockEnd: 1, blockShape: [3] });
    const k = tensorToFloat32(message.k);
    for (let i = 0; i < k.length; i++) expect(Math.abs((k[i] ?? 0) - (expected.k[i] ?? 0))).toBeLessThan(1e-3);
  });

  it("refuses bad K/V requests with the simulator's error body naming the problem", async () => {
    const sim = await start();
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ prompt: "p", block_start: 3, block_end: 1 }, 400, /block_end 1 is before block_start 3/],
      [{ prompt: "p", block_start: 0 }, 400, /invalid block_end/],
      [{ prompt: "p", block_start: 0, block_end: 1, shape: [1, 2, 3, 4] }, 400, /invalid shape/],
      [{ prompt: "p", block_start: 0, block_end: 100_000, shape: [256, 128] }, 400, /would not fit one 67108864-byte message/],
      [{ prompt: "p", block_start: 0, block_end: 1, extra: true }, 400, /extra/],
      [{ model: "nope", prompt: "p", block_start: 0, block_end: 1 }, 404, /The model `nope` does not exist/],
    ];
    for (const [body, status, message] of cases) {
      const res = await kv(sim.url, body);
      expect(res.status).toBe(status);
      const json = (await res.json()) as { error: { message: string; code: number } };
      expect(json.error.message).toMatch(message);
      expect(json.error.code).toBe(status);
    }
    const text = await fetch(`${sim.url}/switchyard/fedattn/kv`, { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" });
    expect(text.status).toBe(400);
    expect(((await text.json()) as { error: { message: string } }).error.message).toMatch(/application\/json/);
    const get = await fetch(`${sim.url}/switchyard/fedattn/kv`);
    expect(get.status).toBe(405);
  });

  it("applies an aggregate, answers its checksums, and lists the last state applied per block range", async () => {
    const sim = await start();
    const empty = (await (await fetch(`${sim.url}/switchyard/fedattn/applied`)).json()) as AppliedList;
    expect(empty).toEqual({ object: "list", data: [] });

    const k = new Float32Array([0.5, -0.25, 1, 2]);
    const v = new Float32Array([3, -1.5]);
    const first = encodeContribution({ blockStart: 0, blockEnd: 7, weight: 3, dtype: "float32", k: { shape: [2, 2], data: k }, v: { shape: [2], data: v } });
    const res = await apply(sim.url, first);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ applied: true, block_start: 0, block_end: 7, k_checksum: 3.25, v_checksum: 1.5 });

    // A float16 aggregate is summed from its values, not its bit patterns.
    const half = encodeContribution({ blockStart: 8, blockEnd: 15, dtype: "float16", k: { shape: [2], data: new Float32Array([1, 0.5]) }, v: { shape: [1], data: new Float32Array([-2]) } });
    expect(await (await apply(sim.url, half)).json()).toMatchObject({ block_start: 8, block_end: 15, k_checksum: 1.5, v_checksum: -2 });

    // Applying a range again replaces its state.
    const replaced = simulatedKv({ model: "m", prompt: "x", blockStart: 0, blockEnd: 7, blockShape: [4] });
    const second = encodeContribution({ blockStart: 0, blockEnd: 7, dtype: "float32", k: { shape: replaced.shape, data: replaced.k }, v: { shape: replaced.shape, data: replaced.v } });
    const answer = (await (await apply(sim.url, second)).json()) as { k_checksum: number; v_checksum: number };
    expect(answer.k_checksum).toBe(checksum(replaced.k));
    expect(answer.v_checksum).toBe(checksum(replaced.v));

    const listed = (await (await fetch(`${sim.url}/switchyard/fedattn/applied`)).json()) as AppliedList;
    expect(listed.object).toBe("list");
    expect(listed.data.map((d) => [d.block_start, d.block_end])).toEqual([[0, 7], [8, 15]]);
    expect(listed.data[0]).toMatchObject({ dtype: "float32", weight: 1, k_shape: [8, 4], v_shape: [8, 4], k_checksum: checksum(replaced.k), v_checksum: checksum(replaced.v) });
    expect(listed.data[1]).toMatchObject({ dtype: "float16", k_shape: [2], v_shape: [1], k_checksum: 1.5, v_checksum: -2 });
    expect(Number.isNaN(Date.parse(listed.data[0]?.applied_at ?? ""))).toBe(false);
  });

  it("refuses a body that is not a tensor message, naming the field, and applies nothing", async () => {
    const sim = await start();
    const res = await apply(sim.url, new TextEncoder().encode("FATNxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { message: string; type: string } };
    expect(json.error.message).toMatch(/not a tensor message.*version/);
    const listed = (await (await fetch(`${sim.url}/switchyard/fedattn/applied`)).json()) as AppliedList;
    expect(listed.data).toEqual([]);
    expect((await simPost(sim, "/switchyard/fedattn/applied", {})).status).toBe(405);
  });
});
