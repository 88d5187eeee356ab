/**
 * The names and HELP texts of every metric `GET /admin/metrics` serves (docs/operations.md#metrics),
 * as data with no dependencies, so the operator files' tests (tests/node/ops-prometheus.test.ts) can
 * check that the alert rules and the dashboard only use metrics that exist.
 */

/** HELP texts of the counters the gateway keeps. */
export const COUNTERS = {
  switchyard_requests_total:
    "API requests answered by the gateway, by route, model, serving region and node (empty when none served it) and HTTP status; a stream counts once, with the status its headers had.",
  switchyard_tokens_total: "Tokens metered, by direction (in: prompt, out: completion) and model.",
  switchyard_admission_refusals_total:
    "Requests refused before reaching a node, by layer (auth, key, environment, tenant, global, budget, route) and reason (invalid_key, rpm, tpm, concurrency, budget, unavailable, no_capacity, …).",
  switchyard_admissions_total: "Requests admitted, by path: local (from the isolate's capacity leases, no Redis round trip) or redis (waited on one).",
  switchyard_limits_fail_open_total: "Requests admitted without a rate-limit or concurrency check because Redis did not answer in time (label check).",
  switchyard_budgets_fail_closed_total: "Requests refused because budgets could not be checked (Redis unavailable).",
  switchyard_cache_lookups_total: "Response and embeddings cache lookups, by cache (response, embeddings) and result (hit, miss).",
  switchyard_failovers_total: "Requests moved to another node before their first byte, by why the previous node failed (timeout, unreachable, status_5xx, capacity, secret, clock).",
  switchyard_circuit_changes_total: "Node circuit breaker transitions seen by the gateway, by node and new state (open, closed).",
  switchyard_billing_exports_total: "Monthly billing exports asked for, by result (ok, failed).",
  switchyard_reconciliation_runs_total: "Reconciliation runs (the scheduled job's hourly one and POST /admin/reconciliation/run), by result (ok, failed).",
  switchyard_scheduled_runs_total: "Runs of the scheduled job (every minute: outbox flushes, stale nodes, key set; hourly: reconciliation), by result (ok, failed).",
  switchyard_reconciliation_alerts_total: "Reconciliation windows whose drift between engine-counted and metered tokens was above the threshold (label node).",
  switchyard_edge_queue_total:
    "Requests that went to a model's edge queue because every node was at its in-flight target, by class and outcome (admitted, timeout, full, cancelled, unavailable: the queue could not be reached and the request went on).",
} as const;

/** A counter name. */
export type CounterName = keyof typeof COUNTERS;

const MIB = 1024 * 1024;
const SIZE_BUCKETS = [64 * 1024, 256 * 1024, MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB];
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Histograms the gateway keeps (cumulative buckets, as Prometheus expects), with their bucket bounds. */
export const HISTOGRAMS = {
  switchyard_request_duration_seconds: { help: "Time from a request reaching the gateway to the last byte of its answer, by route (served requests).", buckets: LATENCY_BUCKETS },
  switchyard_time_to_first_token_seconds: { help: "Time from a streamed request reaching the gateway to the node's first byte, by route.", buckets: LATENCY_BUCKETS },
  switchyard_fedattn_sync_duration_seconds: {
    help: "Coordinator time per federated-attention sync: from the aggregate call reaching the gateway to the aggregate ready to send, less any wait for other participants (docs/fedattn.md).",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  },
  switchyard_edge_queue_wait_seconds: { help: "Time a request waited in the edge queue for a node, by class (admitted and timed-out waits).", buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] },
  switchyard_fedattn_contribution_size_bytes: { help: "Size of each federated-attention contribution received (header and K and V tensors).", buckets: SIZE_BUCKETS },
  switchyard_fedattn_aggregate_size_bytes: { help: "Size of each federated-attention aggregate computed (one block range).", buckets: SIZE_BUCKETS },
} as const;

/** Gauges of the fleet, computed when scraped (fleet-gauges.ts). */
export const FLEET_GAUGES = {
  switchyard_node_up: "1 when the node is registered and active, its last heartbeat is fresh and it reports ready or degraded; 0 otherwise (stale, draining, unhealthy, disabled).",
  switchyard_node_draining: "1 while the node drains (by an operator, or its own shutdown or spot notice).",
  switchyard_node_in_flight: "Requests the node's backplane is running now (its last heartbeat).",
  switchyard_node_capacity: "Concurrency the node's engines accept in all.",
  switchyard_node_waiting_requests: "Requests waiting in the node's engines (vLLM num_requests_waiting, the largest over its engines).",
  switchyard_node_running_requests: "Requests running in the node's engines (vLLM num_requests_running, summed).",
  switchyard_node_kv_cache_usage_ratio: "KV cache use of the node's engines, 0 to 1 (the largest over its engines).",
  switchyard_node_circuit_open: "1 while the gateway's circuit breaker for the node is open or half open.",
  switchyard_node_heartbeat_age_seconds: "Seconds since the gateway took the node's last heartbeat.",
} as const;

/** Gauges of the outboxes, read when scraped (metrics-admin.ts). */
export const OUTBOX_GAUGES = ["switchyard_outbox_backlog", "switchyard_outbox_dead_letters"] as const;

/** Gauges of the edge queues, read when scraped (queue/gauges.ts). */
export const QUEUE_GAUGES = ["switchyard_edge_queue_depth"] as const;
