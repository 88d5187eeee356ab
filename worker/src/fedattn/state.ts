/** What the federated-attention session objects and their routes exchange (docs/fedattn.md). */

/** A refusal decided inside a session object, turned into an ApiError by the routes. */
export interface SessionRefusal {
  ok: false;
  code: "not_found" | "conflict" | "permission_denied" | "invalid_value" | "no_contributions" | "bad_weight" | "shape_mismatch" | "unmatched_block_range" | "duplicate_contribution" | "session_full" | "request_too_large";
  message: string;
  param: string | null;
}

/** An outcome of a session call: the value, or why not. */
export type SessionOutcome<T> = ({ ok: true } & T) | SessionRefusal;

/** One pending contribution, as listed (not its bytes). */
export interface PendingEntry {
  participant: string;
  block_start: number;
  block_end: number;
  bytes: number;
}

/** A session as `GET /v1/fedattn/sessions/active` shows it. */
export interface SessionSummary {
  session_id: string;
  status: "active" | "ended";
  initiator: string;
  participants: string[];
  /** Participants that left. */
  departed: string[];
  sync_interval: number;
  privacy_mode: boolean;
  started_at: string;
  last_activity_at: string;
  pending_contributions: number;
  pending: PendingEntry[];
  total_syncs: number;
  average_sync_latency_ms: number | null;
}

/** What creates a session. */
export interface CreateInput {
  sessionId: string;
  initiator: string;
  syncInterval: number;
  privacyMode: boolean;
  idleTimeoutSeconds: number;
}

/** Longest an aggregate call may wait for the other participants (`wait_ms`). */
export const MAX_WAIT_MS = 60_000;

/** Header naming the (already authenticated) participant on the routes' internal calls to a session object. */
export const PARTICIPANT_HEADER = "x-fedattn-participant";

/** A refusal. */
export function refuse(code: SessionRefusal["code"], message: string, param: string | null = null): SessionRefusal {
  return { ok: false, code, message, param };
}
