import { describeError } from "../describe-error.ts";
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
  return describeError(err);
}

/** Loopback hosts (the gateway on another machine cannot reach them). */
export function isLoopbackHost(host: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|\[?::1\]?|localhost)$/.test(host);
}
