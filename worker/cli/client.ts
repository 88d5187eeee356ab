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
}

/**
 * A client of `${baseUrl}/admin` authenticated with the token (ADMIN_TOKEN or an admin-scoped key),
 * which is looked up at the first request, so a usage mistake is reported before a missing token.
 */
export function adminApi(baseUrl: string, token: () => string): AdminApi {
  const base = baseUrl.replace(/\/+$/, "");
  return {
    baseUrl: base,
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      const headers: Record<string, string> = { authorization: `Bearer ${token()}`, accept: "application/json" };
      if (body !== undefined) headers["content-type"] = "application/json";
      let res: Response;
      try {
        res = await fetch(`${base}/admin${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (err) {
        const reason = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
        throw new ApiFailure(`Cannot reach the gateway at ${base} (${reason}). Is it running (npm start)? Point --url or SWITCHYARD_URL at it.`, 0, null);
      }
      const text = await res.text();
      let json: unknown = null;
      try {
        json = text === "" ? null : JSON.parse(text);
      } catch {
        // Not JSON: reported below with the status.
      }
      if (!res.ok) {
        const error = (json as { error?: { message?: unknown; code?: unknown } } | null)?.error;
        const message = typeof error?.message === "string" ? error.message : `HTTP ${res.status} ${text.slice(0, 200)}`;
        throw new ApiFailure(message, res.status, typeof error?.code === "string" ? error.code : null);
      }
      return json as T;
    },
  };
}
