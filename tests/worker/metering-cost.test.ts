import { describe, expect, it } from "vitest";
import { maxCost } from "../../worker/src/limits/admission.ts";
import { costMicros } from "../../worker/src/metering/record.ts";
import type { ProxyRequest } from "../../worker/src/proxy/validate.ts";
import type { ModelEntry } from "../../worker/src/routing/snapshot.ts";

const model: ModelEntry = { id: "m", family: "f", kind: "chat", contextLength: 8192, inputPrice: 0.5, outputPrice: 1.5, cachedInputPrice: 0.25, createdAt: 0 };

describe("costs", () => {
  it("price prompt, cached prompt and completion tokens in micro-USD", () => {
    // 100 prompt tokens of which 40 cached, 10 completion: 60×0.5 + 40×0.25 + 10×1.5 = 55.
    expect(costMicros(model, 100, 10, 40)).toBe(55);
    expect(costMicros({ ...model, cachedInputPrice: null }, 100, 10, 40)).toBe(65);
  });

  it("apply the serving region's price multiplier", () => {
    expect(costMicros(model, 100, 10, 40, 1.5)).toBe(Math.round(55 * 1.5));
    expect(costMicros(model, 100, 10, 40, 2)).toBe(110);
  });

  it("reserve spend with the dearest candidate region's multiplier, so a settlement never exceeds it", () => {
    const req: ProxyRequest = { endpoint: "chat", model: "m", stream: false, clientWantsUsage: false, upstreamBody: "{}", output: { maxTokens: 10, limitField: "max_tokens", minTokens: 0, ignoreEos: false, prompts: 1, perPrompt: 1 }, promptTokensEstimate: 0, prefixHash: null };
    const plain = maxCost(req, 100, model);
    const dear = maxCost(req, 100, model, 2);
    expect(plain).toEqual({ tokens: 110, spend: Math.ceil(110 * 1.5), requests: 1 });
    expect(dear.spend).toBe(Math.ceil(110 * 1.5 * 2));
    expect(dear.spend).toBeGreaterThanOrEqual(costMicros(model, 100, 10, 0, 2));
  });
});
