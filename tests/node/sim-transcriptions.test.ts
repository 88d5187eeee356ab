import { toFile } from "openai";
import { describe, expect, it } from "vitest";
import { countTextTokens, parseModelSpec, parseSimArgs, type SimEngine, type SimOptions } from "../../backplane/src/sim/index.ts";
import { wavFile } from "../support/audio-fixtures.ts";
import { simClient, simPost, sseEvents, useSimEngine } from "../support/sim-harness.ts";

// vLLM's /v1/audio/transcriptions and /v1/audio/translations on the simulated engine's
// Whisper-like `transcribe` model (docs/simulator.md, Speech to text).

const start = useSimEngine();

const WHISPER = "sim-whisper";
const LABELS = `model_name="${WHISPER}",engine="0"`;
const MODELS: SimOptions["models"] = [
  { name: "sim-llama-8b", kind: "generate", maxModelLen: 8192 },
  { name: WHISPER, kind: "transcribe", maxModelLen: 448 },
];

function startWhisper(options: Partial<SimOptions> = {}): Promise<SimEngine> {
  return start({ models: MODELS, ...options });
}

type Field = string | Uint8Array;

/** POSTs a multipart form as the OpenAI clients send it (a Uint8Array is a file upload named a.wav). */
function upload(sim: SimEngine, fields: Record<string, Field | Field[]>, path = "/v1/audio/transcriptions", headers: Record<string, string> = {}): Promise<Response> {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item === "string") form.append(name, item);
      else form.append(name, new Blob([item], { type: "audio/wav" }), "a.wav");
    }
  }
  return fetch(`${sim.url}${path}`, { method: "POST", body: form, headers });
}

async function json<T>(res: Response | Promise<Response>): Promise<T> {
  return (await (await res).json()) as T;
}

/** Reads one sample from /metrics. */
async function metric(sim: SimEngine, name: string, labels = LABELS): Promise<number> {
  const text = await (await fetch(`${sim.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  if (line === undefined) throw new Error(`no sample ${name}{${labels}}`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

async function counters(sim: SimEngine): Promise<{ prompt: number; generation: number; stop: number; abort: number }> {
  return {
    prompt: await metric(sim, "vllm:prompt_tokens_total"),
    generation: await metric(sim, "vllm:generation_tokens_total"),
    stop: await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="stop"`),
    abort: await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="abort"`),
  };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface Chunk {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: { delta: { content: string }; finish_reason?: string; stop_reason?: null }[];
  usage?: { prompt_tokens: number; total_tokens: number; completion_tokens: number };
}

/** The stream's JSON chunks (without [DONE], which must come last). */
async function chunks(res: Response): Promise<Chunk[]> {
  const events = await sseEvents(res);
  expect(events.at(-1)).toBe("[DONE]");
  return events.slice(0, -1).map((e) => JSON.parse(e) as Chunk);
}

interface ErrorBody {
  error: { message: string; type: string; param: null; code: number };
}

/** Words the simulated speaker says in `seconds` (2.5 per second, at least one). */
const words = (seconds: number) => Math.max(1, Math.round(seconds * 2.5));

describe("simulated vLLM: transcriptions, non-streamed", () => {
  it("answers json with the text and the audio's duration in whole seconds, rounded up", async () => {
    const sim = await startWhisper();
    const audio = wavFile({ seconds: 3.2 });
    const res = await upload(sim, { file: audio, model: WHISPER });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = await json<{ text: string; usage: { type: string; seconds: number } }>(res);
    expect(Object.keys(body)).toEqual(["text", "usage"]);
    expect(body.usage).toEqual({ type: "duration", seconds: 4 });
    // Whisper's text starts with a space; 3.2 s at 2.5 words per second.
    expect(body.text).toMatch(/^ [A-Z][a-z]*( [a-z]+)*$/);
    expect(body.text.split(" ").slice(1)).toHaveLength(words(3.2));

    // The words follow from the audio's bytes: the same file gives the same text, another file another.
    expect((await json<{ text: string }>(upload(sim, { file: audio }))).text).toBe(body.text);
    expect((await json<{ text: string }>(upload(sim, { file: wavFile({ seconds: 3.2, sampleRate: 8000 }) }))).text).not.toBe(body.text);
  });

  it("answers response_format=text with the same JSON body, as vLLM's route does", async () => {
    const sim = await startWhisper();
    const audio = wavFile({ seconds: 2 });
    const asJson = await json<{ text: string }>(upload(sim, { file: audio }));
    const res = await upload(sim, { file: audio, response_format: "text" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ text: asJson.text, usage: { type: "duration", seconds: 2 } });
  });

  it("answers verbose_json with a string duration, one segment per 30-s piece and words null", async () => {
    const sim = await startWhisper();
    const res = await upload(sim, { file: wavFile({ seconds: 65 }), response_format: "verbose_json", "timestamp_granularities[]": ["word", "segment"], language: "de" });
    expect(res.status).toBe(200);
    const raw = await res.text();
    const body = JSON.parse(raw) as { duration: string; language: string; text: string; segments: Record<string, unknown>[]; words: null };
    expect(Object.keys(body)).toEqual(["duration", "language", "text", "segments", "words"]);
    expect(body).toMatchObject({ duration: "65.0", language: "de", words: null });
    expect(body.segments.map((s) => [s.id, s.seek, s.start, s.end])).toEqual([
      [0, 0, 0, 30],
      [1, 30, 30, 60],
      [2, 60, 60, 65],
    ]);
    expect(Object.keys(body.segments[0] ?? {})).toEqual(["id", "avg_logprob", "compression_ratio", "end", "no_speech_prob", "seek", "start", "temperature", "text", "tokens"]);
    // Python floats: 0.0, not 0.
    expect(raw).toContain('"end":30.0,"no_speech_prob":null,"seek":0,"start":0.0,"temperature":0.0,');
    expect(body.segments.map((s) => s.text).join("")).toBe(body.text);
    for (const [i, seconds] of [30, 30, 5].entries()) {
      const segment = body.segments[i] ?? {};
      expect((segment.text as string).split(" ").slice(1)).toHaveLength(words(seconds));
      expect(segment.tokens).toHaveLength(words(seconds));
    }
    // Without `language`, Whisper's default.
    const plain = await json<{ language: string }>(upload(sim, { file: wavFile({ seconds: 1 }), response_format: "verbose_json" }));
    expect(plain.language).toBe("en");
  });

  it("answers a translation with the text only (vLLM gives translations no usage)", async () => {
    const sim = await startWhisper();
    const audio = wavFile({ seconds: 2 });
    const res = await upload(sim, { file: audio, model: WHISPER }, "/v1/audio/translations");
    expect(res.status).toBe(200);
    const body = await json<{ text: string }>(res);
    expect(Object.keys(body)).toEqual(["text"]);
    expect(body.text).toBe((await json<{ text: string }>(upload(sim, { file: audio }))).text);
  });
});

describe("simulated vLLM: transcriptions, streamed", () => {
  it("streams one transcription.chunk per token, a finish chunk, the usage chunk and [DONE]", async () => {
    const sim = await startWhisper();
    const audio = wavFile({ seconds: 2 });
    const text = (await json<{ text: string }>(upload(sim, { file: audio }))).text;
    const res = await upload(sim, { file: audio, model: WHISPER, stream: "true", stream_include_usage: "true" }, "/v1/audio/transcriptions", { "x-request-id": "req-7" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const all = await chunks(res);
    const n = words(2);
    expect(all).toHaveLength(n + 2);
    for (const chunk of all) {
      expect(Object.keys(chunk)).toEqual(chunk.usage ? ["id", "object", "created", "model", "choices", "usage"] : ["id", "object", "created", "model", "choices"]);
      expect(chunk).toMatchObject({ id: "transcribe-req-7", object: "transcription.chunk", model: WHISPER });
    }
    // exclude_unset: a token's choice is only its delta; the engine request's last output sets the finish.
    expect(all[0]?.choices).toEqual([{ delta: { content: text.split(" ").slice(0, 2).join(" ") } }]);
    expect(all[n]?.choices).toEqual([{ delta: { content: "" }, finish_reason: "stop", stop_reason: null }]);
    expect(all.slice(0, n + 1).map((c) => c.choices[0]?.delta.content).join("")).toBe(text);
    const usage = all[n + 1];
    expect(usage?.choices).toEqual([]);
    expect(Object.keys(usage?.usage ?? {})).toEqual(["prompt_tokens", "total_tokens", "completion_tokens"]);
    expect(usage?.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 + n + 1, completion_tokens: n + 1 });
  });

  it("streams a translation as translation.chunk with a translate- id, and no usage chunk unless asked", async () => {
    const sim = await startWhisper();
    const all = await chunks(await upload(sim, { file: wavFile({ seconds: 1 }), stream: "true" }, "/v1/audio/translations"));
    expect(all).toHaveLength(words(1) + 1);
    for (const chunk of all) {
      expect(chunk.object).toBe("translation.chunk");
      expect(chunk.id).toMatch(/^translate-[0-9a-f]{32}$/);
      expect(chunk.usage).toBeUndefined();
    }
  });

  it("adds the running usage to every chunk with stream_continuous_usage_stats", async () => {
    const sim = await startWhisper();
    const all = await chunks(await upload(sim, { file: wavFile({ seconds: 1 }), stream: "true", stream_include_usage: "true", stream_continuous_usage_stats: "true" }));
    expect(all.map((c) => c.usage?.completion_tokens)).toEqual([1, 2, 3, 4, 4]);
    expect(all.every((c) => c.usage?.prompt_tokens === 4)).toBe(true);
  });

  it("splits audio over 30 s into 30-s engine requests, each finishing on its own and counted by the engine", async () => {
    const sim = await startWhisper();
    const prompt = "Glossary: Switchyard, vLLM.";
    const before = await counters(sim);
    const all = await chunks(await upload(sim, { file: wavFile({ seconds: 65 }), prompt, stream: "true", stream_include_usage: "true" }));
    // Each piece's engine request ends with its own EOS chunk, as vLLM streams them.
    expect(all.filter((c) => c.choices[0]?.finish_reason === "stop")).toHaveLength(3);
    const perPiece = 4 + 1 + countTextTokens(prompt); // the decoder prompt, <|prev|> and the prompt
    const generated = words(30) + words(30) + words(5) + 3; // the words and one EOS per piece
    expect(all.at(-1)?.usage).toEqual({ prompt_tokens: 3 * perPiece, total_tokens: 3 * perPiece + generated, completion_tokens: generated });
    const after = await counters(sim);
    expect(after.prompt - before.prompt).toBe(3 * perPiece);
    expect(after.generation - before.generation).toBe(generated);
    expect(after.stop - before.stop).toBe(3);
  });

  it("meters exactly what the usage reports, streamed or not", async () => {
    const sim = await startWhisper();
    const before = await counters(sim);
    const streamed = await chunks(await upload(sim, { file: wavFile({ seconds: 4 }), stream: "true", stream_include_usage: "true" }));
    const usage = streamed.at(-1)?.usage;
    const mid = await counters(sim);
    expect(mid.prompt - before.prompt).toBe(usage?.prompt_tokens);
    expect(mid.generation - before.generation).toBe(usage?.completion_tokens);
    const text = (await json<{ text: string }>(upload(sim, { file: wavFile({ seconds: 4 }) }))).text;
    const after = await counters(sim);
    expect(after.prompt - mid.prompt).toBe(4);
    expect(after.generation - mid.generation).toBe(countTextTokens(text) + 1);
  });

  it("frees the slot of a stream the client cancels and counts only what was generated", async () => {
    const sim = await startWhisper({ interTokenMs: 20 });
    const controller = new AbortController();
    const form = new FormData();
    form.append("file", new Blob([wavFile({ seconds: 20 })]), "a.wav");
    form.append("stream", "true");
    const res = await fetch(`${sim.url}/v1/audio/transcriptions`, { method: "POST", body: form, signal: controller.signal });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let seen = "";
    while ((seen.match(/transcription\.chunk/g) ?? []).length < 3) seen += new TextDecoder().decode((await reader.read()).value);
    await waitFor(async () => (await metric(sim, "vllm:num_requests_running")) === 1);
    controller.abort();
    await waitFor(async () => (await metric(sim, "vllm:num_requests_running")) === 0);
    const after = await counters(sim);
    expect(after.abort).toBe(1);
    expect(after.stop).toBe(0);
    expect(after.prompt).toBe(4);
    expect(after.generation).toBeGreaterThanOrEqual(3);
    expect(after.generation).toBeLessThan(words(20) + 1);
    expect(await metric(sim, "vllm:kv_cache_usage_perc")).toBe(0);
  });

  it("injects sim_fault on the first engine request, as on the other routes", async () => {
    const sim = await startWhisper();
    const events = await sseEvents(await upload(sim, { file: wavFile({ seconds: 2 }), stream: "true", sim_fault: "error_mid_stream", sim_fault_after: "2" }));
    expect(events).toHaveLength(2 + 2);
    expect(events[2]).toMatch(/^\{"error": \{"message": ".+", "type": "InternalServerError", "param": null, "code": 500\}\}$/);
    expect(events[3]).toBe("[DONE]");
    const plain = await upload(sim, { file: wavFile({ seconds: 2 }), sim_fault: "error_mid_stream" });
    expect(plain.status).toBe(500);
    expect((await json<ErrorBody>(plain)).error).toMatchObject({ type: "InternalServerError", code: 500 });
    const dead = await upload(sim, { file: wavFile({ seconds: 2 }), stream: "true", sim_fault: "engine_error" });
    expect(dead.status).toBe(500);
    expect(await dead.text()).toBe("");
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="abort"`)).toBe(2);
  });
});

describe("simulated vLLM: transcription errors", () => {
  it("answers 422 for a file sent as a string and 400 for a missing file, in FastAPI's shapes", async () => {
    const sim = await startWhisper();
    const text = await upload(sim, { file: "not-a-file.wav", model: WHISPER });
    expect(text.status).toBe(422);
    expect(await text.json()).toEqual({ error: { message: "Expected 'file' to be a file-like object, not 'str'.", type: "Unprocessable Entity", param: null, code: 422 } });
    const missing = await upload(sim, { model: WHISPER });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({
      error: { message: "[{'type': 'missing', 'loc': ('body', 'file'), 'msg': 'Field required'}]", type: "Bad Request", param: null, code: 400 },
    });
    // A JSON body is no form: Starlette reads it as an empty one.
    const asJson = await simPost(sim, "/v1/audio/transcriptions", { file: "x" });
    expect(((await asJson.json()) as ErrorBody).error.message).toBe("[{'type': 'missing', 'loc': ('body', 'file'), 'msg': 'Field required'}]");
    const bad = await fetch(`${sim.url}/v1/audio/transcriptions`, { method: "POST", headers: { "content-type": "multipart/form-data; boundary=x" }, body: "garbage" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as ErrorBody).error).toEqual({ message: "There was an error parsing the body", type: "Bad Request", param: null, code: 400 });
  });

  it("coerces form strings like pydantic and reports the ones that do not fit", async () => {
    const sim = await startWhisper();
    const res = await upload(sim, { file: wavFile({ seconds: 1 }), stream: "maybe", temperature: "warm", response_format: "csv" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.message).toBe(
      "[{'type': 'literal_error', 'loc': ('body', 'response_format'), 'msg': \"Input should be 'json', 'text', 'srt', 'verbose_json' or 'vtt'\"}, " +
        "{'type': 'bool_parsing', 'loc': ('body', 'stream'), 'msg': 'Input should be a valid boolean, unable to interpret input'}, " +
        "{'type': 'float_parsing', 'loc': ('body', 'temperature'), 'msg': 'Input should be a valid number, unable to parse string as a number'}]",
    );
    const ok = await upload(sim, { file: wavFile({ seconds: 1 }), stream: "False", temperature: "0.2" });
    expect(ok.status).toBe(200);
  });

  it("refuses srt and vtt, and verbose_json with stream, with vLLM's 400s", async () => {
    const sim = await startWhisper();
    for (const format of ["srt", "vtt"]) {
      const res = await upload(sim, { file: wavFile({ seconds: 1 }), response_format: format });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: { message: "Currently only support response_format`text`, `json` or `verbose_json`", type: "BadRequestError", param: null, code: 400 } });
    }
    const verbose = await upload(sim, { file: wavFile({ seconds: 1 }), response_format: "verbose_json", stream: "true" });
    expect(verbose.status).toBe(400);
    expect(((await verbose.json()) as ErrorBody).error).toMatchObject({ message: "verbose_json format doesn't support streaming case", type: "BadRequestError" });
  });

  it("refuses stream options without stream=true, judging the raw strings as vLLM's validator does", async () => {
    const sim = await startWhisper();
    const message = "[{'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, Stream options can only be defined when `stream=True`.'}]";
    const options: Record<string, string>[] = [{ stream_include_usage: "true" }, { stream_continuous_usage_stats: "true" }, { stream_include_usage: "false" }];
    for (const fields of options) {
      const res = await upload(sim, { file: wavFile({ seconds: 1 }), ...fields });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: { message, type: "Bad Request", param: null, code: 400 } });
    }
    // "false" is a non-empty string, so it counts as given: the check passes and the answer is JSON.
    const res = await upload(sim, { file: wavFile({ seconds: 1 }), stream: "false", stream_include_usage: "true" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
  });

  it("answers 400 for audio it cannot decode", async () => {
    const sim = await startWhisper();
    const res = await upload(sim, { file: new TextEncoder().encode("this is not audio at all") });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { message: "Invalid or unsupported audio file.", type: "BadRequestError", param: null, code: 400 } });
    expect(await metric(sim, "vllm:request_success_total", `${LABELS},finished_reason="stop"`)).toBe(0);
  });

  it("refuses chat on the transcribe model and transcription on the chat model, like a vLLM without that task", async () => {
    const sim = await startWhisper();
    const chat = await simPost(sim, "/v1/chat/completions", { model: WHISPER, messages: [{ role: "user", content: "hi" }] });
    expect(chat.status).toBe(400);
    expect(await chat.json()).toEqual({ error: { message: "The model does not support Chat Completions API", type: "BadRequestError", param: null, code: 400 } });
    const embed = await simPost(sim, "/v1/embeddings", { model: WHISPER, input: "hi" });
    expect(((await embed.json()) as ErrorBody).error.message).toBe("The model does not support Embeddings API");
    const transcribe = await upload(sim, { file: wavFile({ seconds: 1 }), model: "sim-llama-8b" });
    expect(transcribe.status).toBe(400);
    expect(await transcribe.json()).toEqual({ error: { message: "The model does not support Transcriptions API", type: "BadRequestError", param: null, code: 400 } });
    const translate = await upload(sim, { file: wavFile({ seconds: 1 }), model: "sim-llama-8b" }, "/v1/audio/translations");
    expect(((await translate.json()) as ErrorBody).error.message).toBe("The model does not support Translations API");
    const unknown = await upload(sim, { file: wavFile({ seconds: 1 }), model: "whisper-9" });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as ErrorBody).error.message).toBe("The model `whisper-9` does not exist.");
  });

  it("refuses a transcription without a model on an engine that has no transcribe model", async () => {
    // An omitted model falls back to the first model, which has no Transcriptions API.
    const sim = await start();
    const res = await upload(sim, { file: wavFile({ seconds: 1 }) });
    expect(res.status).toBe(400);
    expect((await json<ErrorBody>(res)).error.message).toBe("The model does not support Transcriptions API");
  });

  it("takes --model name:transcribe, with Whisper's 448-token context by default", () => {
    expect(parseModelSpec("sim-whisper:transcribe")).toEqual({ name: WHISPER, kind: "transcribe", maxModelLen: 448 });
    expect(parseModelSpec("openai/whisper:large:transcribe:1024")).toEqual({ name: "openai/whisper:large", kind: "transcribe", maxModelLen: 1024 });
    expect(() => parseModelSpec("w:transcribe:vision")).toThrow(/apply to generate models only/);
    expect(parseSimArgs(["--model", "sim-whisper:transcribe"], {}).models).toEqual([{ name: WHISPER, kind: "transcribe", maxModelLen: 448 }]);
  });

  it("lists the transcribe model in /v1/models with Whisper's 448-token context", async () => {
    const sim = await start({ models: [{ name: WHISPER, kind: "transcribe", maxModelLen: 448 }] });
    const list = await json<{ data: { id: string; max_model_len: number; parent: null }[] }>(fetch(`${sim.url}/v1/models`));
    expect(list.data).toMatchObject([{ id: WHISPER, max_model_len: 448, parent: null }]);
  });

  it("cuts a piece at max_model_len minus its prompt, and refuses a prompt longer than the model", async () => {
    const sim = await start({ models: [{ name: WHISPER, kind: "transcribe", maxModelLen: 12 }] });
    // 4 + <|prev|> + 2 prompt tokens = 7: the piece may generate 5 tokens, not the 26 of 10 s.
    const all = await chunks(await upload(sim, { file: wavFile({ seconds: 10 }), prompt: "hello there", stream: "true", stream_include_usage: "true" }));
    expect(all.at(-2)?.choices[0]).toMatchObject({ finish_reason: "length", stop_reason: null });
    expect(all.at(-1)?.usage).toEqual({ prompt_tokens: 7, total_tokens: 12, completion_tokens: 5 });
    const long = "a b c d e f g h";
    const message = "The decoder prompt (length 13) is longer than the maximum model length of 12. Make sure that `max_model_len` is no smaller than the number of text tokens.";
    const refused = await upload(sim, { file: wavFile({ seconds: 1 }), prompt: long });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as ErrorBody).error).toMatchObject({ message, type: "BadRequestError" });
    const streamed = await sseEvents(await upload(sim, { file: wavFile({ seconds: 1 }), prompt: long, stream: "true" }));
    expect(streamed).toEqual([`{"error": {"message": ${JSON.stringify(message)}, "type": "BadRequestError", "param": null, "code": 400}}`, "[DONE]"]);
  });
});

describe("simulated vLLM: transcriptions through the official openai client", () => {
  it("serves client.audio.transcriptions.create, plain and streamed", async () => {
    const sim = await startWhisper();
    const client = simClient(sim);
    const bytes = wavFile({ seconds: 3 });
    const result = await client.audio.transcriptions.create({ file: await toFile(bytes, "a.wav"), model: WHISPER });
    expect(result.text.split(" ").slice(1)).toHaveLength(words(3));
    expect(result).toMatchObject({ usage: { type: "duration", seconds: 3 } });

    const stream = await client.audio.transcriptions.create({ file: await toFile(bytes, "a.wav"), model: WHISPER, stream: true });
    let text = "";
    let events = 0;
    for await (const event of stream) {
      // vLLM's chunks are chat-like, not OpenAI's transcript.text.delta events.
      const chunk = event as unknown as Chunk;
      text += chunk.choices[0]?.delta.content ?? "";
      events++;
    }
    expect(events).toBe(words(3) + 1);
    expect(text).toBe(result.text);
  });
});
