import { describe, expect, it } from "vitest";
import { checksum, kvShape, KvShapeError, parseShape, simulatedKv } from "../../backplane/src/fedattn/kv.ts";

// The simulated engine's deterministic K/V (backplane/src/fedattn/kv.ts).

const base = { model: "sim-llama-8b", prompt: "The capital of France is", blockStart: 0, blockEnd: 7 };

function bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

describe("simulated K/V", () => {
  it("gives identical bytes for the same model, prompt, range and seed", () => {
    const a = simulatedKv(base);
    const b = simulatedKv({ ...base });
    expect(bytes(a.k)).toEqual(bytes(b.k));
    expect(bytes(a.v)).toEqual(bytes(b.v));
  });

  it("defaults to [blocks in range, 16, 64] float32 values in [-1, 1), K different from V", () => {
    const kv = simulatedKv(base);
    expect(kv.shape).toEqual([8, 16, 64]);
    expect(kv.k).toBeInstanceOf(Float32Array);
    expect(kv.k.length).toBe(8 * 16 * 64);
    expect(kv.v.length).toBe(kv.k.length);
    for (const t of [kv.k, kv.v]) {
      expect(Math.min(...t)).toBeGreaterThanOrEqual(-1);
      expect(Math.max(...t)).toBeLessThan(1);
      // Spread over the interval, not stuck near one value.
      expect(Math.abs(checksum(t) / t.length)).toBeLessThan(0.05);
    }
    expect(bytes(kv.k)).not.toEqual(bytes(kv.v));
  });

  it("honours the block shape, 1 to 3 dims", () => {
    expect(simulatedKv({ ...base, blockEnd: 2, blockShape: [4] }).shape).toEqual([3, 4]);
    const kv = simulatedKv({ ...base, blockStart: 5, blockEnd: 5, blockShape: [2, 3, 5] });
    expect(kv.shape).toEqual([1, 2, 3, 5]);
    expect(kv.k.length).toBe(30);
    expect(() => simulatedKv({ ...base, blockShape: [1, 2, 3, 4] })).toThrow(KvShapeError);
    expect(() => simulatedKv({ ...base, blockShape: [] })).toThrow(/1 to 3 dims/);
    expect(() => simulatedKv({ ...base, blockShape: [0, 4] })).toThrow(/>= 1/);
  });

  it("differs when the prompt, model, seed or range differs", () => {
    const reference = bytes(simulatedKv(base).k);
    expect(bytes(simulatedKv({ ...base, prompt: "The capital of Spain is" }).k)).not.toEqual(reference);
    expect(bytes(simulatedKv({ ...base, model: "other-model" }).k)).not.toEqual(reference);
    expect(bytes(simulatedKv({ ...base, seed: 1 }).k)).not.toEqual(reference);
    const shifted = simulatedKv({ ...base, blockStart: 8, blockEnd: 15 });
    expect(shifted.shape).toEqual([8, 16, 64]);
    expect(bytes(shifted.k)).not.toEqual(reference);
  });

  it("gives a block the same values whichever range it is asked in", () => {
    const whole = simulatedKv({ ...base, blockShape: [4, 8] });
    const tail = simulatedKv({ ...base, blockStart: 4, blockEnd: 7, blockShape: [4, 8] });
    expect(Array.from(tail.k)).toEqual(Array.from(whole.k.subarray(4 * 32)));
    expect(Array.from(tail.v)).toEqual(Array.from(whole.v.subarray(4 * 32)));
  });

  it("refuses a range or shape whose K and V would not fit one 64 MiB message, before allocating", () => {
    expect(() => kvShape(0, 4_000_000_000)).toThrow(/would not fit one 67108864-byte message/);
    expect(() => kvShape(0, 3, [4096, 4096])).toThrow(KvShapeError);
    expect(() => kvShape(5, 4)).toThrow(/block_end 4 is before block_start 5/);
    expect(() => kvShape(-1, 4)).toThrow(/block_start/);
    expect(kvShape(0, 31, [256, 128])).toEqual([32, 256, 128]);
  });

  it("parses shapes written 16x64 or 16,64", () => {
    expect(parseShape("16x64")).toEqual([16, 64]);
    expect(parseShape("2,3,4")).toEqual([2, 3, 4]);
    expect(parseShape("8")).toEqual([8]);
    for (const bad of ["", "16x", "x64", "0x4", "1.5x2", "-3", "ax4"]) expect(parseShape(bad)).toBeNull();
  });
});
