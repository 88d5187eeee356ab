import type OpenAI from "openai";
import { APIError } from "openai";
import { describe, expect, it } from "vitest";
import { simClient, useSimEngine } from "../support/sim-harness.ts";

// The fields that change how much vLLM generates, as the simulated engine honours them (the gateway
// prices admission from the same rules, worker/src/limits/pricing.ts).

const start = useSimEngine();

// vLLM-only sampling fields the openai types do not declare; the client sends extra keys as they are.
type VllmExtras = { min_tokens?: number; ignore_eos?: boolean; best_of?: number };

describe("simulated vLLM: how much a request generates", () => {
  it("treats an explicit max_tokens null on /v1/completions as no limit, so min_tokens 600 yields at least 600 tokens", async () => {
    const sim = await start();
    const body: OpenAI.CompletionCreateParamsNonStreaming & VllmExtras = { model: "sim-llama-8b", prompt: "Once upon a time", max_tokens: null, min_tokens: 600 };
    const res = await simClient(sim).completions.create(body);
    expect(res.usage?.completion_tokens).toBeGreaterThanOrEqual(600);
    expect(res.choices[0]?.finish_reason).toBe("stop");
    // Absent, it is vLLM's default of 16, and min_tokens above it is a 400.
    const absent: OpenAI.CompletionCreateParamsNonStreaming & VllmExtras = { model: "sim-llama-8b", prompt: "Once upon a time", min_tokens: 600 };
    const err = await simClient(sim).completions.create(absent).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toContain("min_tokens must be less than or equal to max_tokens=16");
  });

  it("generates n choices per prompt of a list and sums their usage", async () => {
    const sim = await start();
    const res = await simClient(sim).completions.create({ model: "sim-llama-8b", prompt: ["a", "b", "c"], n: 2, max_tokens: 5 });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(res.usage?.completion_tokens).toBe(30);
  });

  it("runs every choice to its limit with ignore_eos", async () => {
    const sim = await start();
    const body: OpenAI.ChatCompletionCreateParamsNonStreaming & VllmExtras = { model: "sim-llama-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 200, n: 2, ignore_eos: true };
    const res = await simClient(sim).chat.completions.create(body);
    expect(res.usage?.completion_tokens).toBe(400);
    expect(res.choices.map((c) => c.finish_reason)).toEqual(["length", "length"]);
  });

  it("refuses best_of above 1 with a 400, as vLLM's V1 engine does, and accepts best_of 1", async () => {
    const sim = await start();
    const refused: OpenAI.CompletionCreateParamsNonStreaming & VllmExtras = { model: "sim-llama-8b", prompt: "hi", max_tokens: 3, best_of: 3 };
    const err = await simClient(sim).completions.create(refused).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toContain("vLLM V1 does not yet support best_of.");
    const smaller = await simClient(sim).completions.create({ ...refused, n: 4 }).then(() => null, (e: unknown) => e);
    expect((smaller as APIError).message).toContain("best_of must be greater than or equal to n");
    const one: OpenAI.CompletionCreateParamsNonStreaming & VllmExtras = { ...refused, best_of: 1 };
    expect((await simClient(sim).completions.create(one)).usage?.completion_tokens).toBe(3);
  });
});
