import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { countPromptTokens, parseSimArgs, SIM_HELP, simOptions } from "../../backplane/src/sim/index.ts";

// Options, CLI flags and the tokenizer rules of the simulated engine.

const CLI = fileURLToPath(new URL("../../backplane/src/sim/cli.ts", import.meta.url));

describe("simulator options and flags", () => {
  it("fills vLLM-like defaults", () => {
    expect(simOptions()).toEqual({
      host: "127.0.0.1",
      port: 0,
      models: [
        { name: "sim-llama-8b", kind: "generate", maxModelLen: 8192 },
        { name: "sim-embed", kind: "embed", maxModelLen: 512 },
      ],
      ttftMs: 20,
      prefillMsPerToken: 0,
      interTokenMs: 5,
      embedMs: 0,
      outputTokens: 32,
      maxConcurrency: 16,
      schedulingPolicy: "fcfs",
      seed: 0,
      embeddingDimensions: 384,
      loras: [],
      runtimeLora: false,
      script: [],
      fedattnShape: [16, 64],
    });
  });

  it("rejects invalid options with a message naming the option", () => {
    expect(() => simOptions({ maxConcurrency: 0 })).toThrow(/maxConcurrency/);
    expect(() => simOptions({ models: [] })).toThrow(/models/);
    expect(() => simOptions({ models: [{ name: "a", kind: "generate", maxModelLen: 10 }, { name: "a", kind: "embed", maxModelLen: 10 }] })).toThrow(/unique/);
  });

  it("parses every flag, both --flag value and --flag=value, with repeatable --model", () => {
    const options = parseSimArgs(
      [
        "--host", "0.0.0.0", "--port=8000", "--model", "llama:4096", "--model", "bge:embed", "--model", "qwen3:8b:generate:32768",
        "--ttft-ms", "1.5", "--prefill-ms-per-token", "0.25", "--inter-token-ms", "0", "--embed-ms", "20", "--output-tokens", "7", "--max-concurrency", "2", "--scheduling-policy", "priority", "--seed", "-3",
        "--embedding-dimensions", "16", "--api-key", "k", "--fedattn-shape", "8x32",
      ],
      {},
    );
    expect(options).toEqual({
      host: "0.0.0.0",
      port: 8000,
      models: [
        { name: "llama", kind: "generate", maxModelLen: 4096 },
        { name: "bge", kind: "embed", maxModelLen: 512 },
        { name: "qwen3:8b", kind: "generate", maxModelLen: 32768 },
      ],
      ttftMs: 1.5,
      prefillMsPerToken: 0.25,
      interTokenMs: 0,
      embedMs: 20,
      outputTokens: 7,
      maxConcurrency: 2,
      schedulingPolicy: "priority",
      seed: -3,
      embeddingDimensions: 16,
      apiKey: "k",
      loras: [],
      runtimeLora: false,
      script: [],
      fedattnShape: [8, 32],
    });
  });

  it("falls back to SIM_* environment variables, flags winning", () => {
    const options = parseSimArgs(["--port", "9001"], { SIM_PORT: "9000", SIM_TTFT_MS: "0", SIM_MODELS: "a,b:embed:128", VLLM_API_KEY: "v" });
    expect(options).toMatchObject({ port: 9001, ttftMs: 0, apiKey: "v" });
    expect(options.models).toEqual([
      { name: "a", kind: "generate", maxModelLen: 8192 },
      { name: "b", kind: "embed", maxModelLen: 128 },
    ]);
  });

  it("throws errors that name the bad flag", () => {
    expect(() => parseSimArgs(["--port", "abc"], {})).toThrow(/--port/);
    expect(() => parseSimArgs(["--port", "70000"], {})).toThrow(/--port/);
    expect(() => parseSimArgs(["--max-concurrency", "0"], {})).toThrow(/--max-concurrency/);
    expect(() => parseSimArgs(["--ttft-ms"], {})).toThrow(/--ttft-ms: missing value/);
    expect(() => parseSimArgs(["--model", "bad name"], {})).toThrow(/--model/);
    expect(() => parseSimArgs(["--bogus", "1"], {})).toThrow(/Unknown flag --bogus/);
    expect(() => parseSimArgs([], { SIM_PORT: "x" })).toThrow(/SIM_PORT/);
    expect(SIM_HELP).toContain("--inter-token-ms");
  });

  it("counts tokens by the documented rules", () => {
    expect(countPromptTokens("")).toBe(1);
    expect(countPromptTokens("Hello, world!")).toBe(1 + 4);
    expect(countPromptTokens("internationalization")).toBe(1 + 3);
    expect(countPromptTokens([{ role: "user", content: "Hello" }])).toBe(1 + 4 + 1 + 3);
    expect(countPromptTokens([{ role: "user", content: [{ type: "text", text: "a b" }] }, { role: "assistant", content: null }])).toBe(1 + 4 + 2 + 4 + 3);
  });
});

describe("simulator CLI", () => {
  it("prints where it listens and exits cleanly on SIGTERM", async () => {
    const child = spawn(process.execPath, [CLI, "--port", "0", "--model", "m1:1024"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", () => {
        const match = /listening on (http:\/\/127\.0\.0\.1:\d+) \(models: m1 \(generate, 1024\)\)/.exec(out);
        if (match?.[1]) resolve(match[1]);
      });
      child.once("exit", () => reject(new Error(`exited early: ${out}`)));
    });
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("rejects a bad flag with exit code 2 and the flag in the message", async () => {
    const child = spawn(process.execPath, [CLI, "--port", "nope"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(2);
    expect(err).toContain("--port");
  });
});
