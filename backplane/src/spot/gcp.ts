import { metadataRequest } from "./http.ts";
import type { PollResult, ProviderCheck } from "./watcher.ts";

/**
 * GCP preemption (cloud.google.com/compute/docs/instances/create-use-spot, "detect preemption").
 * `instance/preempted` turns TRUE when the ACPI shutdown starts. The API gives no deadline; Spot VMs get
 * 30 s by default (`preemptionNoticeDuration`, beta, can raise it to 120 s), so the deadline reported is
 * the moment the notice was seen + 30 s: the safe lower bound.
 *
 * Plain polling rather than `?wait_for_change=true`: the same cadence as the other clouds, and a
 * hanging long-poll would need its own timeout handling for no gain at a 5 s period.
 */

/** Default notice Spot VMs get before they are stopped. */
export const GCP_PREEMPTION_NOTICE_MS = 30_000;

const PREEMPTED_PATH = "/computeMetadata/v1/instance/preempted";

export function gcpCheck(baseUrl: string): ProviderCheck {
  return {
    provider: "gcp",
    url: baseUrl,
    async poll(signal: AbortSignal): Promise<PollResult> {
      const res = await metadataRequest(`${baseUrl}${PREEMPTED_PATH}`, { headers: { "Metadata-Flavor": "Google" } }, signal);
      // The real server stamps every answer with Metadata-Flavor: Google; anything else is not it
      // (a captive proxy or another cloud answering the hostname).
      if (res.headers.get("metadata-flavor") !== "Google") {
        return { observations: [], error: `${PREEMPTED_PATH} answered ${res.status} without Metadata-Flavor: Google` };
      }
      const value = res.body.trim();
      if (res.status !== 200 || (value !== "TRUE" && value !== "FALSE")) {
        return { observations: [], error: `${PREEMPTED_PATH} answered ${res.status}` };
      }
      if (value === "FALSE") return { observations: [], error: null };
      return {
        observations: [{ key: "preempted", action: "preempt", deadline: { afterMs: GCP_PREEMPTION_NOTICE_MS }, detail: { preempted: value }, drain: true }],
        error: null,
      };
    },
  };
}
