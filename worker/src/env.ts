import type { Redis } from "@upstash/redis/cloudflare";
import type { KeyIdentity } from "./auth/identity.ts";
import type { RoutingView } from "./platform/hot-state.ts";
import type { Settings } from "./settings.ts";

/** Structured log line (JSON on stdout, picked up by Workers Logs / `wrangler tail`). Never pass secrets. */
export type Logger = (event: string, fields: Record<string, unknown>) => void;

/** Hono environment of the worker: bindings from `wrangler types`, every context variable typed. */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    startedAt: number;
    settings: Settings;
    redis: Redis;
    log: Logger;
    identity: KeyIdentity;
    routing: RoutingView;
  };
}
