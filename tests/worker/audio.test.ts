/**
 * Audio uploads at the edge (/v1/audio/transcriptions, /v1/audio/translations): the gateway refuses
 * what it cannot price or the engine cannot serve before anything is reserved, re-encodes the form
 * for the node, and prices audio by its duration and by the tokens each 30-second chunk may generate.
 */
import { inject } from "vitest";
import { describe, expect, it } from "vitest";
import { boundaryOf, encodeMultipart, parseMultipart } from "../../worker/src/audio/multipart.ts";
import { validateAudio } from "../../worker/src/audio/validate.ts";
import { maxCost, rateTokens } from "../../worker/src/limits/pricing.ts";
import { costMicros } from "../../worker/src/metering/record.ts";
import type { ModelEntry } from "../../worker/src/routing/snapshot.ts";
import { wavFile } from "../support/audio-fixtures.ts";
import { gateway } from "./helpers.ts";

interface ErrorBody {
  error: { code: string; param: string | null; message: string };
}

/** A multipart form as the OpenAI clients send it. */
function form(fields: Record<string, string | Uint8Array>): FormData {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value === "string") data.append(name, value);
    else data.append(name, new File([value], "audio.wav", { type: "audio/wav" }));
  }
  return data;
}

async function upload(fields: Record<string, string | Uint8Array>, path = "/v1/audio/transcriptions", key?: string) {
  // Encoded here: the helper would otherwise label the body JSON.
  const encoded = new Response(form(fields));
  const res = await gateway(path, { method: "POST", body: await encoded.arrayBuffer(), headers: { "content-type": encoded.headers.get("content-type") ?? "" }, key });
  return { status: res.status, body: await res.json<ErrorBody>() };
}

const WHISPER: ModelEntry = {
  id: "whisper",
  family: "whisper",
  kind: "transcription",
  contextLength: 448,
  inputPrice: 0,
  outputPrice: 0.5,
  cachedInputPrice: null,
  audioPrice: 0.006,
  createdAt: 0,
};

describe("audio uploads at the edge", () => {
  const audio = wavFile({ seconds: 2 });

  it("refuse, naming the field, what cannot be priced or served, before anything is reserved", async () => {
    const cases: [Record<string, string | Uint8Array>, number, string | null][] = [
      [{ file: audio }, 400, "model"],
      [{ model: "sim-whisper" }, 400, "file"],
      [{ model: "sim-whisper", file: "not a file" }, 400, "file"],
      // Bytes whose duration no container reader can give are refused rather than served unmetered.
      [{ model: "sim-whisper", file: new TextEncoder().encode("definitely not audio, just text") }, 400, "file"],
      [{ model: "sim-whisper", file: new Uint8Array(0) }, 400, "file"],
      [{ model: "sim-whisper", file: audio, response_format: "xml" }, 400, "response_format"],
      [{ model: "sim-whisper", file: audio, response_format: "srt", stream: "true" }, 400, "stream"],
      [{ model: "sim-whisper", file: audio, stream_include_usage: "true" }, 400, "stream_include_usage"],
      [{ model: "sim-whisper", file: audio, stream: "maybe" }, 400, "stream"],
      [{ model: "sim-whisper", file: audio, temperature: "7" }, 400, "temperature"],
      [{ model: "sim-whisper", file: audio, priority: "-10" }, 400, "priority"],
      // A chat model cannot transcribe.
      [{ model: "sim-llama-8b", file: audio }, 400, "model"],
      [{ model: "no-such-model", file: audio }, 404, "model"],
    ];
    for (const [fields, status, param] of cases) {
      const { status: got, body } = await upload(fields);
      expect({ fields: Object.keys(fields), status: got, param: body.error.param }).toEqual({ fields: Object.keys(fields), status, param });
    }
    const chat = await upload({ model: "sim-llama-8b", file: audio });
    expect(chat.body.error.message).toContain("a chat model and cannot serve /v1/audio/transcriptions");
  });

  it("take only multipart uploads, within 25 MB, with a key that has the chat scope", async () => {
    const json = await gateway("/v1/audio/transcriptions", { method: "POST", body: JSON.stringify({ model: "sim-whisper", file: "x" }) });
    expect(json.status).toBe(415);
    expect((await json.json<ErrorBody>()).error.message).toContain("multipart/form-data");
    const big = await upload({ model: "sim-whisper", file: new Uint8Array(26 * 1024 * 1024) });
    expect(big.status).toBe(413);
    expect(big.body.error.message).toContain("25 MB");
    const scoped = await upload({ model: "sim-whisper", file: audio }, "/v1/audio/translations", inject("keys").embeddingsOnly);
    expect(scoped).toMatchObject({ status: 403, body: { error: { code: "permission_denied" } } });
    expect((await gateway("/v1/audio/transcriptions", { method: "GET" })).status).toBe(405);
    expect((await gateway("/v1/audio/transcriptions", { method: "POST", body: "x", headers: { "content-type": "multipart/form-data; boundary=x" }, key: null })).status).toBe(401);
  });

  it("encode the form again for the node, asking a stream's usage chunk of the engine whatever the client said", async () => {
    const data = form({ model: "whisper", file: audio, stream: "true", stream_include_usage: "false", language: "en" });
    const sent = new Response(data);
    const req = validateAudio("transcriptions", await sent.arrayBuffer(), sent.headers.get("content-type") ?? "");
    expect(req).toMatchObject({ endpoint: "transcriptions", model: "whisper", stream: true, clientWantsUsage: false, audioMs: 2000 });
    const upstream = await new Response(req.upstreamBody, { headers: { "content-type": req.upstreamContentType ?? "" } }).formData();
    expect(upstream.getAll("stream_include_usage")).toEqual(["true"]);
    expect(upstream.get("language")).toBe("en");
    const file = upstream.get("file");
    expect(file).toBeInstanceOf(File);
    expect(new Uint8Array(await (file as File).arrayBuffer())).toEqual(audio);
    // The node reads the boundary from the body's first line (backplane/src/proxy/audio-form.ts).
    const firstLine = new TextDecoder().decode((req.upstreamBody as Uint8Array).subarray(0, 200)).split("\r\n")[0];
    expect(req.upstreamContentType).toBe(`multipart/form-data; boundary=${firstLine?.slice(2)}`);
  });

  it("forward one value per field, the one priced: a second file or model cannot reach the engine", async () => {
    const data = form({ model: "whisper", file: audio, response_format: "json" });
    data.append("file", new File([wavFile({ seconds: 600 })], "long.wav"));
    data.append("model", "dearer-model");
    data.append("stream", "false");
    data.append("stream", "true");
    data.append("timestamp_granularities[]", "word");
    data.append("timestamp_granularities[]", "segment");
    const sent = new Response(data);
    const req = validateAudio("transcriptions", await sent.arrayBuffer(), sent.headers.get("content-type") ?? "");
    expect(req).toMatchObject({ model: "whisper", stream: false, audioMs: 2000 });
    const upstream = await new Response(req.upstreamBody, { headers: { "content-type": req.upstreamContentType ?? "" } }).formData();
    expect(upstream.getAll("model")).toEqual(["whisper"]);
    expect(upstream.getAll("stream")).toEqual(["false"]);
    const files = upstream.getAll("file");
    expect(files).toHaveLength(1);
    expect(new Uint8Array(await (files[0] as File).arrayBuffer())).toEqual(audio);
    expect(upstream.getAll("timestamp_granularities[]")).toEqual(["word", "segment"]);
  });

  it("parse forms as the clients write them, refuse broken ones with a 400, and write forms any parser reads back", async () => {
    const enc = new TextEncoder();
    expect(boundaryOf("multipart/form-data; boundary=abc")).toBe("abc");
    expect(boundaryOf('Multipart/Form-Data; charset=utf-8; boundary="a b:c"')).toBe("a b:c");
    expect(boundaryOf("application/json")).toBeNull();
    const body = enc.encode(
      'preamble\r\n--b1\r\nContent-Disposition: form-data; filename="x.wav"; name="file"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--b\r\n--b1\r\ncontent-disposition: form-data; name="model"\r\n\r\nwhisper\r\n--b1--\r\nepilogue',
    );
    const parts = parseMultipart(body, "b1");
    expect(parts.map((p) => ("value" in p ? [p.name, p.value] : [p.name, p.filename, p.contentType, new TextDecoder().decode(p.bytes)]))).toEqual([
      ["file", "x.wav", "audio/wav", "RIFF\r\n--b"],
      ["model", "whisper"],
    ]);
    for (const broken of [
      "--b1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper", // never closed
      "--b1\r\nContent-Type: text/plain\r\n\r\nx\r\n--b1--", // no disposition
      "--b1\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--b1--", // no name
      "--b1\nContent-Disposition: form-data; name=\"a\"\n\nx\n--b1--", // LF line ends
      "no boundary at all",
    ]) {
      expect(() => parseMultipart(enc.encode(broken), "b1"), broken).toThrow(/could not parse the multipart/);
    }
    const many = Array.from({ length: 70 }, (_, i) => `--b1\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\nv\r\n`).join("") + "--b1--";
    expect(() => parseMultipart(enc.encode(many), "b1")).toThrow(/more than 64 parts/);
    // The form the node gets, read back by the runtime's own parser: the same fields and bytes.
    const written = encodeMultipart([
      { name: "model", value: "whisper" },
      { name: "file", filename: 'a "quoted"\r\nname.wav', contentType: "audio/wav", bytes: audio },
    ]);
    const read = await new Response(written.body, { headers: { "content-type": written.contentType } }).formData();
    expect(read.get("model")).toBe("whisper");
    expect(new Uint8Array(await (read.get("file") as File).arrayBuffer())).toEqual(audio);
    expect(parseMultipart(written.body, boundaryOf(written.contentType) ?? "")).toHaveLength(2);
  });

  it("price audio by its duration and by the context of every 30-second chunk the engine hears", async () => {
    const sent = new Response(form({ model: "whisper", file: wavFile({ seconds: 95 }) }));
    const req = validateAudio("transcriptions", await sent.arrayBuffer(), sent.headers.get("content-type") ?? "");
    expect(req.audioMs).toBe(95_000);
    // 95 s are 4 chunks of at most 30 s, each up to the 448-token context.
    const cost = maxCost(req, 3_040_000, WHISPER);
    const audioPrice = (95_000 * 0.006 * 1e6) / 60_000; // 9,500 micro-USD
    expect(cost).toEqual({ tokens: 4 * 448, spend: Math.ceil(4 * 448 * 0.5 + audioPrice), requests: 1 });
    expect(maxCost(req, 3_040_000, WHISPER, 2).spend).toBe(Math.ceil((4 * 448 * 0.5 + audioPrice) * 2));
    // Tokens per minute: the chunks' possible output, not the upload's bytes.
    expect(rateTokens(req, 3_040_000, WHISPER)).toBe(4 * 448);
    // Billed: the tokens the engine reported plus the audio's duration.
    expect(costMicros(WHISPER, 10, 100, 0, 1, 95_000)).toBe(Math.round(100 * 0.5 + audioPrice));
    expect(costMicros({ ...WHISPER, audioPrice: null }, 10, 100, 0, 1, 95_000)).toBe(50);
  });
});
