import type { LogLevel } from "./config.ts";

/** A structured logger: one JSON line per event on stdout. */
export type Log = (event: string, fields?: Record<string, unknown>, level?: LogLevel) => void;

const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };
// Field names whose values are never written, whatever the caller passes.
const SECRET_FIELD = /secret|token|authorization|api[-_]?key|password/i;

function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = SECRET_FIELD.test(k) ? "[redacted]" : v;
  return out;
}

/** A logger writing events at or above `level` to `write` (stdout by default). */
export function createLog(level: LogLevel, write: (line: string) => void = (line) => process.stdout.write(line)): Log {
  return (event, fields = {}, eventLevel = "info") => {
    if (ORDER[eventLevel] > ORDER[level]) return;
    write(`${JSON.stringify({ level: eventLevel, event, at: new Date().toISOString(), ...redact(fields) })}\n`);
  };
}
