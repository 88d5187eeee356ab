/**
 * The backplane reads an audio upload's boundary from the signed body, never from the unsigned
 * content-type header, and finds the model and stream fields it routes on.
 */
import { describe, expect, it } from "vitest";
import { multipartContentType, readAudioForm } from "../../backplane/src/proxy/audio-form.ts";

async function encode(fields: Record<string, string>): Promise<Uint8Array> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append("file", new File([new Uint8Array([1, 2, 3])], "a.wav"));
  return new Uint8Array(await new Response(form).arrayBuffer());
}

describe("audio forms at the backplane", () => {
  it("take the boundary from the body's first line and read the model and stream fields", async () => {
    const body = await encode({ model: "sim-whisper", stream: "true" });
    const boundary = new TextDecoder().decode(body.subarray(2, 200)).split("\r\n")[0];
    expect(multipartContentType(body)).toBe(`multipart/form-data; boundary=${boundary}`);
    expect(await readAudioForm(body)).toEqual({ model: "sim-whisper", stream: true, contentType: `multipart/form-data; boundary=${boundary}` });
    expect(await readAudioForm(await encode({ model: "m", stream: "False" }))).toMatchObject({ model: "m", stream: false });
  });

  it("refuse bodies that are not a form with a model", async () => {
    expect(multipartContentType(new TextEncoder().encode('{"model":"m"}'))).toBeNull();
    expect(await readAudioForm(new TextEncoder().encode('{"model":"m"}'))).toBeNull();
    expect(await readAudioForm(await encode({ stream: "true" }))).toBeNull();
    // A boundary line with no closing part is no readable form.
    expect(await readAudioForm(new TextEncoder().encode("--abc\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm"))).toBeNull();
  });
});
