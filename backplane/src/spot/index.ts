/**
 * Spot / preemption watchers: one per enabled cloud, each polling its metadata server every
 * `pollIntervalMs` and reporting every distinct event once.
 *
 * What drains: AWS `instance-action`, GCP `preempted` and Azure `Preempt` events call `onNotice` with
 * `drain: true`. The AWS rebalance recommendation is reported with `drain: false` (forward it to the
 * gateway, keep serving): it is an early warning that may never turn into an interruption.
 *
 * Failure mode: a metadata server that is down or answers oddly is logged once when it becomes
 * unreachable and once when it comes back; the watcher keeps polling and never throws.
 */
import type { SpotConfig } from "../config.ts";
import { awsCheck } from "./aws.ts";
import { azureCheck } from "./azure.ts";
import { gcpCheck } from "./gcp.ts";
import { type ProviderCheck, type SpotLog, type SpotNoticeHandler, watch, type WatcherHandle } from "./watcher.ts";

export { AWS_TOKEN_TTL_SECONDS } from "./aws.ts";
export { GCP_PREEMPTION_NOTICE_MS } from "./gcp.ts";
export type { SpotLog, SpotNoticeHandler } from "./watcher.ts";

/** The running watchers. */
export interface SpotWatcherHandle {
  /** Stops every watcher and aborts requests in flight; safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts a watcher per enabled provider (none when all are off). `onNotice` gets each event once, with
 * `drain` telling whether the node should stop taking work; a callback that takes only the notice works.
 */
export function startSpotWatchers(
  config: SpotConfig,
  nodeId: string,
  onNotice: SpotNoticeHandler,
  log: SpotLog,
): SpotWatcherHandle {
  const checks: ProviderCheck[] = [];
  if (config.aws) checks.push(awsCheck(config.awsMetadataUrl));
  if (config.gcp) checks.push(gcpCheck(config.gcpMetadataUrl));
  if (config.azure) checks.push(azureCheck(config.azureMetadataUrl));
  const watchers: WatcherHandle[] = checks.map((check) => {
    log("spot_watcher_started", { provider: check.provider, url: check.url, intervalMs: config.pollIntervalMs });
    return watch(check, { nodeId, intervalMs: config.pollIntervalMs, onNotice, log });
  });
  let closing: Promise<void> | null = null;
  return {
    close() {
      closing ??= Promise.all(watchers.map((w) => w.close())).then(() => undefined);
      return closing;
    },
  };
}
