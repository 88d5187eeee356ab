/**
 * Conversation audit on the request path (docs/audit.md): what an environment in `metadata` or
 * `full` mode records for each inference request, built in waitUntil from the usage row and, in
 * `full` mode, the bodies. With the mode `off` nothing here runs.
 */
import type { UsageRow } from "../metering/record.ts";

/** An environment's conversation audit. */
export type AuditMode = "off" | "metadata" | "full";

/** Each direction's body is kept up to this many bytes; the rest is dropped and the record flagged truncated. */
export const MAX_AUDIT_BODY_BYTES = 1024 * 1024;

/** One conversation as queued in Redis (dates as ISO text) and written to `conversations` by the scheduled job. */
export interface ConversationRecord {
  id: string;
  at: string;
  endedAt: string;
  tenantId: string;
  environmentId: string;
  apiKeyId: string;
  mode: "metadata" | "full";
  endpoint: string;
  model: string;
  nodeId: string | null;
  status: string;
  httpStatus: number;
  streamed: boolean;
  promptTokens: number;
  completionTokens: number;
  requestBody: string | null;
  requestTruncated: boolean;
  responseBody: string | null;
  responseTruncated: boolean;
}

/** A body kept for the audit, cut at MAX_AUDIT_BODY_BYTES. */
export interface CapturedBody {
  text: string;
  truncated: boolean;
}

const decoder = new TextDecoder();

/** Keeps the first MAX_AUDIT_BODY_BYTES of a body (a UTF-8 character cut at the limit decodes as U+FFFD). */
export function captureBytes(bytes: Uint8Array): CapturedBody {
  const truncated = bytes.byteLength > MAX_AUDIT_BODY_BYTES;
  return { text: decoder.decode(truncated ? bytes.subarray(0, MAX_AUDIT_BODY_BYTES) : bytes), truncated };
}

/**
 * Collects a stream's bytes on the side of the usage tap (proxy/sse-tap.ts), for `full` mode only:
 * the client's stream is never held for it; past MAX_AUDIT_BODY_BYTES the rest is only counted.
 */
export class StreamCapture {
  private readonly chunks: Uint8Array[] = [];
  private kept = 0;
  private dropped = false;

  /** Adds a chunk as it passes. */
  push(chunk: Uint8Array): void {
    if (this.dropped) return;
    const room = MAX_AUDIT_BODY_BYTES - this.kept;
    if (chunk.byteLength > room) {
      if (room > 0) this.chunks.push(chunk.slice(0, room));
      this.kept = MAX_AUDIT_BODY_BYTES;
      this.dropped = true;
      return;
    }
    // A copy: the runtime may reuse the chunk's buffer once it is enqueued.
    this.chunks.push(chunk.slice());
    this.kept += chunk.byteLength;
  }

  /**
   * The stream as its SSE `data:` payloads joined by newlines (the engine's JSON chunks and `[DONE]`,
   * without the framing: comments, `event:`/`id:` lines and line ends go). Raw payloads rather than
   * reassembled text: faithful for every dialect, tool calls included.
   */
  payloads(): CapturedBody {
    const all = new Uint8Array(this.kept);
    let at = 0;
    for (const c of this.chunks) {
      all.set(c, at);
      at += c.byteLength;
    }
    const data: string[] = [];
    for (const line of decoder.decode(all).split(/\r\n|\r|\n/)) {
      if (!line.startsWith("data:")) continue;
      data.push(line.startsWith("data: ") ? line.slice(6) : line.slice(5));
    }
    return { text: data.join("\n"), truncated: this.dropped };
  }
}

/** The conversation record of a finished request: metadata from its usage row, bodies only in `full` mode. */
export function conversationRecord(mode: "metadata" | "full", row: UsageRow, request: CapturedBody | null, response: CapturedBody | null): ConversationRecord {
  const at = row.at instanceof Date ? row.at : new Date();
  const full = mode === "full";
  return {
    id: row.id,
    at: at.toISOString(),
    endedAt: new Date(at.getTime() + row.latencyMs).toISOString(),
    tenantId: row.tenantId,
    environmentId: row.environmentId,
    apiKeyId: row.apiKeyId,
    mode,
    endpoint: row.endpoint,
    model: row.model,
    nodeId: row.nodeId ?? null,
    status: row.status,
    httpStatus: row.httpStatus,
    streamed: row.streamed,
    promptTokens: row.promptTokens ?? 0,
    completionTokens: row.completionTokens ?? 0,
    requestBody: full ? (request?.text ?? null) : null,
    requestTruncated: full && (request?.truncated ?? false),
    responseBody: full ? (response?.text ?? null) : null,
    responseTruncated: full && (response?.truncated ?? false),
  };
}
