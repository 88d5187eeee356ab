import type { BackplaneConfig } from "../config.ts";
import { SETTINGS } from "../config.ts";
import { PROBE_PATH } from "../../../schema/contracts/heartbeat.ts";
import { importSigningKey, NODE_HEADER, signRequest } from "../../../schema/contracts/signing.ts";
import { errorMessage } from "../describe-error.ts";
import { type Check, check, reason } from "./doctor-types.ts";

/** How long the gateway may take (it is across the internet, unlike the engines). */
const GATEWAY_TIMEOUT_MS = 5_000;

/** Whether a 200 is the probe route's `{ ok: true, node_id }` for this node. */
function probeAccepted(text: string, nodeId: string): boolean {
  try {
    const json: unknown = JSON.parse(text);
    return typeof json === "object" && json !== null && "ok" in json && json.ok === true && "node_id" in json && json.node_id === nodeId;
  } catch {
    return false;
  }
}

/**
 * Asks the gateway whether it accepts this node's secret: a signed `POST /internal/nodes/probe`,
 * signed exactly as heartbeats are (scheme v2, fresh nonce), which the gateway verifies and answers
 * without changing anything. Null when no gateway URL is set (the gateway check says so).
 */
export async function checkNodeSecret(config: BackplaneConfig, fetchFn: typeof fetch): Promise<Check | null> {
  if (config.gatewayUrl === null) return null;
  const url = `${config.gatewayUrl}${PROBE_PATH}`;
  const body = "{}";
  const signed = await signRequest(await importSigningKey(config.secret), "POST", PROBE_PATH, body);
  let res: Response;
  let text: string;
  try {
    res = await fetchFn(url, {
      method: "POST",
      headers: { "content-type": "application/json", [NODE_HEADER]: config.nodeId, ...signed },
      body,
      signal: AbortSignal.timeout(GATEWAY_TIMEOUT_MS),
    });
    text = await res.text();
  } catch (err) {
    return check("secret", "fail", `the node secret could not be checked: ${url} is unreachable (${reason(err)})`, `check ${SETTINGS.gatewayUrl.flag} and that this host can reach it (DNS, firewall, outbound HTTPS)`);
  }
  const secretFix = `set ${SETTINGS.secret.flag} / ${SETTINGS.secret.env} to what \`npm run admin -- node secret --id ${config.nodeId}\` prints (run with the gateway's NODE_SIGNING_SECRET)`;
  if (res.status === 200) {
    if (probeAccepted(text, config.nodeId)) return check("secret", "ok", `node secret accepted by the gateway (node ${config.nodeId})`);
    return check("secret", "warn", `${url} answered 200 but not as the gateway's probe route does, so the node secret was not checked`, `check ${SETTINGS.gatewayUrl.flag} points at the Switchyard gateway`);
  }
  const said = errorMessage(text, 200);
  if (res.status === 401) {
    // The gateway's message names the cause: a clock more than 60 s off, else the secret (or an outdated backplane).
    const clock = /clock|stale/i.test(said);
    return check("secret", "fail", `the gateway refused the node secret: ${said || "401 without a reason"}`, clock ? "enable NTP: `timedatectl set-ntp true`, or install chrony" : secretFix);
  }
  if (res.status === 404 || res.status === 405) {
    return check("secret", "warn", `the gateway has no ${PROBE_PATH} route (it is older than this backplane), so the node secret was not checked`, "upgrade the gateway; meanwhile a 401 in the heartbeat_failed log line means the secret is wrong");
  }
  return check("secret", "fail", `${url} answered ${res.status}${said ? `: ${said}` : ""}`, `check ${SETTINGS.gatewayUrl.flag} points at the gateway, and the gateway's own health`);
}
