import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import { REQUEST_ID_HEADER } from "../../../schema/contracts/signing.ts";
import { sendError, sseEngineFailure } from "../errors.ts";

/** Where and how to reach the engine. */
export interface EngineTarget {
  baseUrl: string;
  apiKey: string | null;
  timeoutMs: number;
}

/**
 * Forwards an already verified request to the engine and pipes the response back byte for byte.
 * If the engine dies after the response started, an SSE response is ended with an in-band error
 * event and `[DONE]` (a JSON response is cut, which the gateway sees as a failed body). If the
 * gateway goes away, the engine request is aborted so the GPU stops generating.
 */
export function forwardToEngine(
  target: EngineTarget,
  req: IncomingMessage,
  body: Uint8Array,
  res: ServerResponse,
): Promise<void> {
  return new Promise((resolve) => {
    const url = new URL(req.url ?? "/", target.baseUrl);
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const headers: Record<string, string | number> = {
      "content-type": "application/json",
      "content-length": body.length,
      accept: req.headers.accept ?? "*/*",
    };
    const requestId = req.headers[REQUEST_ID_HEADER];
    if (typeof requestId === "string") headers[REQUEST_ID_HEADER] = requestId;
    if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;

    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      resolve();
    };
    const upstream = send(url, { method: req.method, headers, timeout: target.timeoutMs }, (engineRes) => {
      upstream.setTimeout(0);
      const contentType = engineRes.headers["content-type"] ?? "application/json";
      const isSse = contentType.startsWith("text/event-stream");
      const outHeaders: Record<string, string> = { "content-type": contentType };
      if (isSse) outHeaders["cache-control"] = "no-cache";
      res.writeHead(engineRes.statusCode ?? 502, outHeaders);
      res.flushHeaders();
      engineRes.pipe(res, { end: false });
      // `close` without `complete` means the engine connection broke before the response ended.
      engineRes.on("error", () => {});
      engineRes.on("close", () => {
        if (engineRes.complete) res.end();
        else if (isSse && !res.writableEnded && !res.destroyed) {
          res.end(sseEngineFailure("The inference engine failed in the middle of the stream."));
        } else res.destroy();
        finish();
      });
    });
    upstream.on("timeout", () => {
      upstream.destroy(new Error("engine timeout"));
      sendError(res, "engine_timeout", `The inference engine did not answer within ${target.timeoutMs} ms.`);
      finish();
    });
    upstream.on("error", (err) => {
      if (!res.headersSent) sendError(res, "engine_unavailable", `The inference engine is unreachable: ${err.message}`);
      finish();
    });
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
      finish();
    });
    upstream.end(body);
  });
}
