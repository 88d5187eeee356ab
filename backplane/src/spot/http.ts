export { describeError } from "../describe-error.ts";
/** What a metadata server answered. */
export interface MetadataResponse {
  status: number;
  headers: Headers;
  body: string;
}

/**
 * Metadata servers are link-local and answer in milliseconds, so a request that takes longer than this
 * means the server is not there (wrong cloud, blocked by a firewall): give up and try again next poll.
 */
export const METADATA_TIMEOUT_MS = 2_000;

/** One request to a metadata server; throws on network errors, timeouts and when `signal` aborts. */
export async function metadataRequest(
  url: string,
  init: { method?: string; headers: Record<string, string>; body?: string },
  signal: AbortSignal,
  timeoutMs: number = METADATA_TIMEOUT_MS,
): Promise<MetadataResponse> {
  const res = await fetch(url, {
    method: init.method ?? "GET",
    headers: init.headers,
    body: init.body,
    redirect: "manual",
    signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
  });
  return { status: res.status, headers: res.headers, body: await res.text() };
}


/** Parses a date the cloud sent (ISO 8601 or RFC 1123) into ISO 8601 UTC, or null when absent or unparsable. */
export function toIsoDate(value: unknown): string | null {
  if (typeof value !== "string" || value.trim() === "") return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

/** Parses a JSON object body, or null when the body is not one. */
export function parseJsonObject(body: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(body);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
