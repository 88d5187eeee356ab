import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { simClient, simPost, sseEvents, useSimEngine } from "../support/sim-harness.ts";
import { countPromptTokens, countTextTokens, parseSimArgs, type SimEngine } from "../../backplane/src/sim/index.ts";

// Scripted answers (--script): the simulated model answers as a persona would, for tests only.

const start = useSimEngine();
const dir = mkdtempSync(join(tmpdir(), "sim-script-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CRAWDAD = "You are Crawdad, the security specialist of the council.";
const ANSWER = "SECURITY CONCERN: storing passwords in plain text exposes every user; hash them with argon2id.";
const SCRIPT = [
  { system: "You are Crawdad", user: "plain text", answer: ANSWER },
  { system: "You are Crawdad", answer: "No security risk I can see." },
  { system: "You are Crawdad", user: "plain text", answer: "never used: the first match wins" },
];

const messages = (system: string, user: string) => [
  { role: "system" as const, content: system },
  { role: "user" as const, content: user },
];

interface ChatBody {
  id: string;
  choices: { message: { content: string | null }; finish_reason: string; stop_reason: string | null }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number; prompt_tokens_details: null };
}

async function chat(sim: SimEngine, body: Record<string, unknown>): Promise<ChatBody> {
  const res = await simPost(sim, "/v1/chat/completions", body);
  expect(res.status).toBe(200);
  return (await res.json()) as ChatBody;
}

async function metric(sim: SimEngine, name: string): Promise<number> {
  const text = await (await fetch(`${sim.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{model_name="sim-llama-8b",engine="0"} `));
  return Number(line?.slice(line.lastIndexOf(" ") + 1));
}

describe("scripted answers", () => {
  it("answers a matching chat request with the script's text, counted by the simulator's tokenizer", async () => {
    const sim = await start({ script: SCRIPT });
    const conversation = messages(CRAWDAD, "Should we store passwords in plain text?");
    const body = await chat(sim, { model: "sim-llama-8b", messages: conversation });
    expect(body.choices[0]?.message.content).toBe(ANSWER);
    expect(body.choices[0]?.finish_reason).toBe("stop");
    expect(body.usage).toEqual({ prompt_tokens: countPromptTokens(conversation), completion_tokens: countTextTokens(ANSWER) + 1, total_tokens: countPromptTokens(conversation) + countTextTokens(ANSWER) + 1, prompt_tokens_details: null });
    expect(await metric(sim, "vllm:generation_tokens_total")).toBe(countTextTokens(ANSWER) + 1);
  });

  it("picks the first entry whose substrings match, and a user substring must match too", async () => {
    const sim = await start({ script: SCRIPT });
    const other = await chat(sim, { messages: messages(CRAWDAD, "Should we add API usage logging?") });
    expect(other.choices[0]?.message.content).toBe("No security risk I can see.");
    // System text is every system message joined: a persona split over two messages still matches.
    const split = await chat(sim, { messages: [{ role: "system", content: "Preamble." }, { role: "developer", content: CRAWDAD }, { role: "user", content: [{ type: "text", text: "plain text?" }] }] });
    expect(split.choices[0]?.message.content).toBe(ANSWER);
  });

  it("answers with the model's usual text when nothing matches, byte for byte what an unscripted engine says", async () => {
    const scripted = await start({ script: SCRIPT });
    const request = { messages: messages("You are Turtle, the seven-generations specialist.", "plain text?"), seed: 7 };
    const withScript = await chat(scripted, request);
    await scripted.close();
    const plain = await start();
    const without = await chat(plain, request);
    expect(withScript.choices[0]?.message.content).toBe(without.choices[0]?.message.content);
    expect(withScript.usage).toEqual(without.usage);
  });

  it("cuts a scripted answer at max_tokens with finish_reason length", async () => {
    const sim = await start({ script: SCRIPT });
    const body = await chat(sim, { messages: messages(CRAWDAD, "plain text"), max_tokens: 3 });
    // SECURITY = one 8-letter piece, CONCERN, then ":".
    expect(body.choices[0]?.message.content).toBe("SECURITY CONCERN:");
    expect(body.choices[0]?.finish_reason).toBe("length");
    expect(body.usage.completion_tokens).toBe(3);
  });

  it("ends a scripted answer at a stop string like any other text", async () => {
    const sim = await start({ script: SCRIPT });
    const body = await chat(sim, { messages: messages(CRAWDAD, "plain text"), stop: ";" });
    expect(body.choices[0]?.message.content).toBe("SECURITY CONCERN: storing passwords in plain text exposes every user");
    expect(body.choices[0]?.stop_reason).toBe(";");
  });

  it("streams a scripted answer one chunk per token through the openai client, with usage", async () => {
    const sim = await start({ script: SCRIPT });
    const stream = await simClient(sim).chat.completions.create({
      model: "sim-llama-8b",
      messages: messages(CRAWDAD, "plain text"),
      stream: true,
      stream_options: { include_usage: true },
    });
    const pieces: string[] = [];
    let finish: string | null = null;
    let usage: unknown = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice?.delta.content) pieces.push(choice.delta.content);
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(pieces.join("")).toBe(ANSWER);
    expect(pieces).toHaveLength(countTextTokens(ANSWER));
    expect(pieces.slice(0, 3)).toEqual(["SECURITY", " CONCERN", ":"]);
    expect(finish).toBe("stop");
    expect(usage).toMatchObject({ completion_tokens: countTextTokens(ANSWER) + 1 });
  });

  it("answers through the Anthropic Messages API, whose system becomes the chat system message", async () => {
    const sim = await start({ script: SCRIPT });
    const res = await simPost(sim, "/v1/messages", { model: "sim-llama-8b", max_tokens: 200, system: CRAWDAD, messages: [{ role: "user", content: "plain text" }] });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { content: { text: string }[]; usage: { output_tokens: number } };
    expect(body.content[0]?.text).toBe(ANSWER);
    expect(body.usage.output_tokens).toBe(countTextTokens(ANSWER) + 1);
  });

  it("leaves tool calls, JSON answers and completions unscripted", async () => {
    const sim = await start({ script: SCRIPT });
    const json = await chat(sim, { messages: messages(CRAWDAD, "plain text"), response_format: { type: "json_object" } });
    expect(json.choices[0]?.message.content).toMatch(/^\{"answer": /);
    const res = await simPost(sim, "/v1/completions", { prompt: `${CRAWDAD} plain text`, max_tokens: 5 });
    const completion = (await res.json()) as { choices: { text: string }[] };
    expect(completion.choices[0]?.text).not.toContain("SECURITY");
  });

  it("keeps the SSE shape: role chunk, a finish chunk with empty content after the last word, [DONE]", async () => {
    const sim = await start({ script: [{ system: "", answer: "Short answer." }] });
    const events = await sseEvents(await simPost(sim, "/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], stream: true }));
    const deltas = events.slice(0, -1).map((e) => (JSON.parse(e) as { choices: { delta: { content?: string }; finish_reason: string | null }[] }).choices[0]);
    expect(deltas.map((d) => d?.delta.content)).toEqual(["", "Short", " answer", ".", ""]);
    expect(deltas.at(-1)?.finish_reason).toBe("stop");
    expect(events.at(-1)).toBe("[DONE]");
  });
});

describe("--script and SIM_SCRIPT", () => {
  it("loads the fixture file named by --script, or by SIM_SCRIPT when the flag is absent", () => {
    const file = join(dir, "script.json");
    writeFileSync(file, JSON.stringify(SCRIPT));
    expect(parseSimArgs(["--script", file], {}).script).toEqual(SCRIPT);
    expect(parseSimArgs([], { SIM_SCRIPT: file }).script).toEqual(SCRIPT);
    expect(parseSimArgs([], {}).script).toEqual([]);
  });

  it("refuses a missing file or a bad entry with a message naming the flag and the entry", () => {
    expect(() => parseSimArgs(["--script", join(dir, "missing.json")], {})).toThrow(/^--script: cannot read .*missing\.json/);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify([{ system: "a", answer: "b" }, { system: "a", anwser: "typo" }]));
    expect(() => parseSimArgs([], { SIM_SCRIPT: bad })).toThrow(/^SIM_SCRIPT: .*bad\.json: entry 1/);
    writeFileSync(bad, JSON.stringify({ system: "a", answer: "b" }));
    expect(() => parseSimArgs(["--script", bad], {})).toThrow(/expected a JSON array/);
  });
});
