/** The admin CLI's HTTP client of the gateway's `/admin` API. */

/** The API answered with an error (its OpenAI-shaped message is in `message`). */
export class ApiFailure extends Error {
  override name = "ApiFailure";
  readonly status: number;
  readonly code: string | null;

  constructor(message: string, status: number, code: string | null) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the admin API. */
export interface AdminApi {
  readonly baseUrl: string;
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** Sends the request and returns the gateway's 2xx response unread (a stream); an error answer throws ApiFailure. */
  open(method: string, path: string, body?: unknown, accept?: string): Promise<Response>;
}

/** The ApiFailure of an error answer: its OpenAI-shaped message, or the status and the start of the body. */
function failure(status: number, text: string): ApiFailure {
  let json: unknown = null;
  try {
    json = text === "" ? null : JSON.parse(text);
  } catch {
    // Not JSON: reported with the status.
  }
  const error = (json as { error?: { message?: unknown; code?: unknown } } | null)?.error;
  const message = typeof error?.message === "string" ? error.message : `HTTP ${status} ${text.slice(0, 200)}`;
  return new ApiFailure(message, status, typeof error?.code === "string" ? error.code : null);
}

/**
 * A client of `${baseUrl}/admin` authenticated with the token (ADMIN_TOKEN or an admin-scoped key),
 * which is looked up at the first request, so a usage mistake is reported before a missing token.
 */
export function adminApi(baseUrl: string, token: () => string): AdminApi {
  const base = baseUrl.replace(/\/+$/, "");
  async function send(method: string, path: string, body: unknown, accept: string): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${token()}`, accept };
    if (body !== undefined) headers["content-type"] = "application/json";
    try {
      return await fetch(`${base}/admin${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      const reason = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
      throw new ApiFailure(`Cannot reach the gateway at ${base} (${reason}). Is it running (npm start)? Point --url or SWITCHYARD_URL at it.`, 0, null);
    }
  }
  return {
    baseUrl: base,
    async open(method: string, path: string, body?: unknown, accept = "text/event-stream"): Promise<Response> {
      const res = await send(method, path, body, accept);
      if (!res.ok) throw failure(res.status, await res.text());
      return res;
    },
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await send(method, path, body, "application/json");
      const text = await res.text();
      if (!res.ok) throw failure(res.status, text);
      try {
        return (text === "" ? null : JSON.parse(text)) as T;
      } catch {
        return null as T;
      }
    },
  };
}
