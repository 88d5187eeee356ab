/** One line of `backplane doctor`: what was checked, how it went, and what to do about it. */
export interface Check {
  name: string;
  status: "ok" | "warn" | "fail";
  detail: string;
  /** What to do; null when there is nothing to do. */
  fix: string | null;
}

/** Builds a check. */
export function check(name: string, status: Check["status"], detail: string, fix: string | null = null): Check {
  return { name, status, detail, fix };
}

/** Short reason for a failed request or command, without headers or bodies. */
export function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === "TimeoutError") return "timed out";
  const cause = (err as Error & { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as Error & { code?: unknown }).code;
    return typeof code === "string" ? code : cause.message;
  }
  const code = (err as Error & { code?: unknown }).code;
  return typeof code === "string" ? code : err.message;
}

/** Loopback hosts (the gateway on another machine cannot reach them). */
export function isLoopbackHost(host: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|\[?::1\]?|localhost)$/.test(host);
}
