import { METADATA_TIMEOUT_MS, metadataRequest, parseJsonObject, toIsoDate } from "./http.ts";
import type { Observation, PollResult, ProviderCheck } from "./watcher.ts";

/**
 * Azure Scheduled Events (learn.microsoft.com/azure/virtual-machines/linux/scheduled-events).
 * Only `Preempt` events are reported, with the deadline from `NotBefore` (RFC 1123, empty once the event
 * has started). Events are not acknowledged (no StartRequests POST): approving one lets Azure evict
 * at once, and we want every second of the grace period for draining.
 */

const EVENTS_PATH = "/metadata/scheduledevents?api-version=2020-07-01";
/** The first call enables the service and can take up to 2 minutes to answer. */
const FIRST_CALL_TIMEOUT_MS = 120_000;

export function azureCheck(baseUrl: string): ProviderCheck {
  let firstCall = true;
  return {
    provider: "azure",
    url: baseUrl,
    async poll(signal: AbortSignal): Promise<PollResult> {
      const timeout = firstCall ? FIRST_CALL_TIMEOUT_MS : METADATA_TIMEOUT_MS;
      firstCall = false;
      const res = await metadataRequest(`${baseUrl}${EVENTS_PATH}`, { headers: { Metadata: "true" } }, signal, timeout);
      const body = res.status === 200 ? parseJsonObject(res.body) : null;
      if (body === null || !Array.isArray(body.Events)) {
        return { observations: [], error: `scheduledevents answered ${res.status}${res.status === 200 ? " without an Events list" : ""}` };
      }
      const observations: Observation[] = [];
      for (const event of body.Events as unknown[]) {
        if (typeof event !== "object" || event === null) continue;
        const e = event as Record<string, unknown>;
        if (e.EventType !== "Preempt" || typeof e.EventId !== "string") continue;
        observations.push({
          key: e.EventId,
          action: "preempt",
          deadline: toIsoDate(e.NotBefore),
          detail: { DocumentIncarnation: body.DocumentIncarnation, ...e },
          drain: true,
        });
      }
      return { observations, error: null };
    },
  };
}
