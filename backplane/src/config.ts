import { z } from "zod";

/** Validated backplane configuration. Parsed once at start; an invalid value stops the daemon. */
export interface BackplaneConfig {
  nodeId: string;
  /** Shared secret with the gateway (hex string printed by the admin tools). */
  secret: string;
  host: string;
  port: number;
  /** Base URL of the OpenAI-compatible engine, e.g. http://127.0.0.1:8000. */
  engineUrl: string;
  /** Bearer token for the engine when it runs with --api-key. */
  engineApiKey: string | null;
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** How long the engine may take to send response headers. */
  engineTimeoutMs: number;
}

const schema = z.object({
  nodeId: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "must be 1-63 lowercase letters, digits, '.', '_' or '-'"),
  secret: z.string().min(32, "must be at least 32 characters (use the secret printed by `npm run admin -- node secret`)"),
  host: z.string().min(1),
  port: z.coerce.number().int().min(0).max(65535),
  engineUrl: z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, "")),
  engineApiKey: z.string().min(1).nullable(),
  tlsCertFile: z.string().min(1).nullable(),
  tlsKeyFile: z.string().min(1).nullable(),
  engineTimeoutMs: z.coerce.number().int().min(100),
});

/** Flag name (and env var) of each setting, used in error messages. */
export const SETTING_NAMES: Record<keyof BackplaneConfig, { flag: string; env: string }> = {
  nodeId: { flag: "--node-id", env: "BACKPLANE_NODE_ID" },
  secret: { flag: "--secret", env: "BACKPLANE_SECRET" },
  host: { flag: "--host", env: "BACKPLANE_HOST" },
  port: { flag: "--port", env: "BACKPLANE_PORT" },
  engineUrl: { flag: "--engine-url", env: "BACKPLANE_ENGINE_URL" },
  engineApiKey: { flag: "--engine-api-key", env: "BACKPLANE_ENGINE_API_KEY" },
  tlsCertFile: { flag: "--tls-cert", env: "BACKPLANE_TLS_CERT" },
  tlsKeyFile: { flag: "--tls-key", env: "BACKPLANE_TLS_KEY" },
  engineTimeoutMs: { flag: "--engine-timeout-ms", env: "BACKPLANE_ENGINE_TIMEOUT_MS" },
};

/** Thrown for an invalid configuration; the message names the setting and how to fix it. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Validates raw settings (flags over env, env over defaults). */
export function parseConfig(raw: Partial<Record<keyof BackplaneConfig, unknown>>): BackplaneConfig {
  const input = {
    host: "0.0.0.0",
    port: 8443,
    engineApiKey: null,
    tlsCertFile: null,
    tlsKeyFile: null,
    engineTimeoutMs: 30_000,
    ...Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined && v !== "")),
  };
  const result = schema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = (issue?.path[0] ?? "config") as keyof BackplaneConfig;
    const names = SETTING_NAMES[field];
    const where = names ? `${names.flag} / ${names.env}` : String(field);
    throw new ConfigError(`Invalid backplane setting ${where}: ${issue?.message ?? "invalid"}`);
  }
  const config = result.data;
  if ((config.tlsCertFile === null) !== (config.tlsKeyFile === null)) {
    throw new ConfigError("Invalid backplane setting --tls-cert / --tls-key: set both or neither.");
  }
  return config;
}
