import type { BackplaneConfig, EngineConfig, EngineKind } from "../config.ts";
import { SETTINGS } from "../config.ts";
import { MAX_CLOCK_SKEW_SECONDS } from "../../../schema/contracts/signing.ts";
import { type Check, check, reason } from "./doctor-types.ts";

/** How long an engine probe may take. */
const ENGINE_TIMEOUT_MS = 2_000;
/** How long the gateway may take (it is across the internet, unlike the engines). */
const GATEWAY_TIMEOUT_MS = 5_000;
/** Clock skew that deserves a look, and skew that will soon break signatures (which allow 60 s). */
const SKEW_WARN_MS = 5_000;
const SKEW_FAIL_MS = 30_000;

/** A path each engine kind answers cheaply when it is up. */
const PROBE_PATH: Record<EngineKind, string> = {
  vllm: "/health",
  sim: "/health",
  llamacpp: "/health",
  openai: "/v1/models",
  ollama: "/api/version",
};

const ENGINE_FIX = `start the engine / check ${SETTINGS.engines.flag} url`;

/** Probes one engine. */
export async function checkEngine(engine: EngineConfig, fetchFn: typeof fetch): Promise<Check> {
  const name = `engine ${engine.id}`;
  const url = `${engine.url}${PROBE_PATH[engine.kind]}`;
  const headers: Record<string, string> = engine.apiKey !== null && engine.kind === "openai" ? { authorization: `Bearer ${engine.apiKey}` } : {};
  const started = performance.now();
  try {
    const res = await fetchFn(url, { headers, signal: AbortSignal.timeout(ENGINE_TIMEOUT_MS) });
    await res.arrayBuffer();
    const ms = Math.round(performance.now() - started);
    if (res.ok) return check(name, "ok", `${engine.kind} at ${engine.url} answered ${res.status} on ${PROBE_PATH[engine.kind]} in ${ms} ms`);
    const fix = res.status === 401 || res.status === 403 ? `check the engine's api-key= in ${SETTINGS.engines.flag}` : ENGINE_FIX;
    return check(name, "fail", `${engine.kind} at ${engine.url} answered ${res.status} on ${PROBE_PATH[engine.kind]}`, fix);
  } catch (err) {
    return check(name, "fail", `${engine.kind} at ${engine.url} is unreachable (${reason(err)})`, ENGINE_FIX);
  }
}

/** Checks the gateway answers `/health`, and measures the clock skew from its `Date` header. */
export async function checkGateway(config: BackplaneConfig, fetchFn: typeof fetch, now: () => number): Promise<Check[]> {
  if (config.gatewayUrl === null) {
    return [check("gateway", "warn", "no gateway URL: heartbeats and spot notices are off", `set ${SETTINGS.gatewayUrl.flag} / ${SETTINGS.gatewayUrl.env}`)];
  }
  const url = `${config.gatewayUrl}/health`;
  const sentAt = now();
  let res: Response;
  try {
    res = await fetchFn(url, { signal: AbortSignal.timeout(GATEWAY_TIMEOUT_MS) });
    await res.arrayBuffer();
  } catch (err) {
    return [check("gateway", "fail", `${url} is unreachable (${reason(err)})`, `check ${SETTINGS.gatewayUrl.flag} and that this host can reach it (DNS, firewall, outbound HTTPS)`)];
  }
  const receivedAt = now();
  const reach = res.ok
    ? check("gateway", "ok", `${url} answered ${res.status} in ${Math.round(receivedAt - sentAt)} ms`)
    : check("gateway", "warn", `${url} answered ${res.status}`, `check ${SETTINGS.gatewayUrl.flag} points at the gateway, and the gateway's own health`);
  return [reach, clockCheck(res.headers.get("date"), sentAt, receivedAt)];
}

function clockCheck(dateHeader: string | null, sentAt: number, receivedAt: number): Check {
  const gatewayMs = dateHeader === null ? Number.NaN : Date.parse(dateHeader);
  if (Number.isNaN(gatewayMs)) return check("clock", "warn", "the gateway sent no Date header, so clock skew cannot be measured", null);
  // The Date header has 1 s resolution: the gateway's clock read somewhere in [date, date + 1 s), and
  // ours somewhere between sending and receiving; compare the midpoints.
  const skewMs = (sentAt + receivedAt) / 2 - (gatewayMs + 500);
  const abs = Math.abs(skewMs);
  const side = skewMs > 0 ? "ahead of" : "behind";
  const detail = `this host's clock is ${(abs / 1000).toFixed(1)} s ${side} the gateway's (signatures allow ${MAX_CLOCK_SKEW_SECONDS} s)`;
  const fix = "enable NTP: `timedatectl set-ntp true`, or install chrony";
  if (abs > SKEW_FAIL_MS) return check("clock", "fail", detail, fix);
  if (abs > SKEW_WARN_MS) return check("clock", "warn", detail, fix);
  return check("clock", "ok", detail);
}
