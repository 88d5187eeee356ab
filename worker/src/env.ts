import type { AuditEvent } from "./audit/outbox.ts";
import type { KeyIdentity } from "./auth/identity.ts";
import type { RequestDeps } from "./platform/deps.ts";
import type { RequestPriority } from "./priority/class.ts";
import type { RoutingView } from "./platform/hot-state.ts";

/** Structured log line (JSON on stdout, picked up by Workers Logs / `wrangler tail`). Never pass secrets. */
export type Logger = (event: string, fields: Record<string, unknown>) => void;

/** Hono environment of the worker: bindings from `wrangler types`, every context variable typed. */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    /** The request's dependencies (settings, Redis, database, logger, secrets), built where it starts (app.ts). */
    deps: RequestDeps;
    identity: KeyIdentity;
    routing: RoutingView;
    /**
     * The successful authentication's audit event, until it is queued: a handler that ends with its
     * own Redis batch takes it (`takeAuthAudit`) and queues it there; otherwise the auth middleware
     * queues it once the handler has returned.
     */
    authAudit: AuditEvent | null;
    /** The API route's label in the request metrics, set by handlers that know it better than the path (platform/request-metrics.ts). */
    apiRoute: string | undefined;
    /** The catalogue model a request resolved to, for the request metrics. */
    apiModel: string | undefined;
    /** The inference request's priority (class, reserved, rank; priority/class.ts), once its model is known. */
    priority: RequestPriority | undefined;
  };
}
