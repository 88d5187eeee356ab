import type { SpotNotice } from "../../../schema/contracts/heartbeat.ts";
import { describeError } from "./http.ts";

/** The cloud providers a watcher can ask. */
export type SpotProvider = SpotNotice["provider"];

/** When the host goes away: an ISO time the cloud gave, a fixed lead from when the notice was seen, or unknown. */
export type Deadline = string | { afterMs: number } | null;

/** One pending event a provider check saw. */
export interface Observation {
  /** Identifies the event; a key is reported once per watcher, however many polls see it. */
  key: string;
  action: string;
  deadline: Deadline;
  detail: Record<string, unknown>;
  /** Whether the node should drain (see index.ts for which events do). */
  drain: boolean;
}

/** What one poll found; `error` is set when some request failed (observations may still be partial). */
export interface PollResult {
  observations: Observation[];
  error: string | null;
}

/** One cloud's metadata check. */
export interface ProviderCheck {
  provider: SpotProvider;
  /** Base URL, for logs. */
  url: string;
  /** Asks the metadata server once; aborts with `signal`. May throw (treated as an unreachable server). */
  poll(signal: AbortSignal): Promise<PollResult>;
}

/** Receives each notice once; `drain` says whether the node should stop taking work. */
export type SpotNoticeHandler = (notice: SpotNotice, drain: boolean) => void;

/** Logs an event with fields. */
export type SpotLog = (event: string, fields: Record<string, unknown>, level?: "error" | "warn" | "info" | "debug") => void;

/** A running watcher. */
export interface WatcherHandle {
  /** Stops polling and aborts a request in flight; safe to call twice. */
  close(): Promise<void>;
}

const MAX_ACTION_LENGTH = 64;

/**
 * Polls `check` every `intervalMs` (the next poll is scheduled when the previous one ends, so polls never
 * overlap), reports each distinct event once, and logs the metadata server going unreachable or coming
 * back once per change. Never throws: errors become log lines.
 */
export function watch(
  check: ProviderCheck,
  options: { nodeId: string; intervalMs: number; onNotice: SpotNoticeHandler; log: SpotLog; now?: () => number },
): WatcherHandle {
  const now = options.now ?? Date.now;
  const controller = new AbortController();
  const reported = new Set<string>();
  let unreachable = false;
  let timer: NodeJS.Timeout | null = null;
  let inFlight: Promise<void> | null = null;
  let closing: Promise<void> | null = null;

  const report = (observation: Observation) => {
    if (reported.has(observation.key)) return;
    reported.add(observation.key);
    const at = now();
    const { deadline } = observation;
    const notice: SpotNotice = {
      nodeId: options.nodeId,
      provider: check.provider,
      action: observation.action.slice(0, MAX_ACTION_LENGTH) || "unknown",
      deadline: deadline === null || typeof deadline === "string" ? deadline : new Date(at + deadline.afterMs).toISOString(),
      noticedAt: new Date(at).toISOString(),
      detail: observation.detail,
    };
    options.log("spot_notice", { provider: notice.provider, action: notice.action, deadline: notice.deadline, drain: observation.drain }, "warn");
    try {
      options.onNotice(notice, observation.drain);
    } catch (err) {
      options.log("spot_notice_handler_error", { provider: notice.provider, error: describeError(err) }, "error");
    }
  };

  const handle = (result: PollResult) => {
    for (const observation of result.observations) report(observation);
    if (result.error !== null && !unreachable) {
      unreachable = true;
      options.log("spot_metadata_unreachable", { provider: check.provider, url: check.url, error: result.error }, "warn");
    } else if (result.error === null && unreachable) {
      unreachable = false;
      options.log("spot_metadata_reachable", { provider: check.provider, url: check.url });
    }
  };

  const tick = async () => {
    let result: PollResult;
    try {
      result = await check.poll(controller.signal);
    } catch (err) {
      result = { observations: [], error: describeError(err) };
    }
    if (!controller.signal.aborted) handle(result);
  };

  const loop = () => {
    timer = null;
    inFlight = tick().then(() => {
      inFlight = null;
      if (controller.signal.aborted) return;
      timer = setTimeout(loop, options.intervalMs);
      // The daemon's server keeps the process alive; a watcher alone should not.
      timer.unref();
    });
  };

  loop();

  return {
    close() {
      closing ??= (async () => {
        controller.abort();
        if (timer !== null) clearTimeout(timer);
        timer = null;
        await inFlight;
      })();
      return closing;
    },
  };
}
