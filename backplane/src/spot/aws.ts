import { describeError, type MetadataResponse, metadataRequest, parseJsonObject, toIsoDate } from "./http.ts";
import type { Observation, PollResult, ProviderCheck } from "./watcher.ts";

/**
 * AWS EC2 spot interruption notices over IMDSv2 (docs.aws.amazon.com spot-instance-termination-notices,
 * rebalance-recommendations; aws-node-termination-handler pkg/ec2metadata).
 */

/** IMDSv2 session token lifetime we ask for: the maximum, 6 h. */
export const AWS_TOKEN_TTL_SECONDS = 21_600;
/** Refresh the token this long before it expires, so no poll sends a token that dies in flight. */
const TOKEN_REFRESH_MARGIN_MS = 5 * 60_000;

const TOKEN_PATH = "/latest/api/token";
const INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action";
const REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance";

interface Token {
  value: string;
  expiresAt: number;
}

/**
 * Checks `instance-action` (drains: the instance is stopped or terminated at `time`, ~2 min ahead) and
 * the rebalance recommendation (reported with `drain: false`: it is an early warning of elevated risk,
 * not an interruption, and draining on it would take capacity down on every wobble of the spot market).
 */
export function awsCheck(baseUrl: string, now: () => number = Date.now): ProviderCheck {
  let token: Token | null = null;

  const fetchToken = async (signal: AbortSignal): Promise<string> => {
    const res = await metadataRequest(`${baseUrl}${TOKEN_PATH}`, {
      method: "PUT",
      headers: { "X-aws-ec2-metadata-token-ttl-seconds": String(AWS_TOKEN_TTL_SECONDS) },
    }, signal);
    // 403 here means IMDS is disabled on the instance; 400 a bad TTL header.
    if (res.status !== 200 || res.body.trim() === "") throw new Error(`token request answered ${res.status}`);
    token = { value: res.body.trim(), expiresAt: now() + AWS_TOKEN_TTL_SECONDS * 1000 };
    return token.value;
  };

  const currentToken = (signal: AbortSignal): Promise<string> =>
    token !== null && token.expiresAt - TOKEN_REFRESH_MARGIN_MS > now() ? Promise.resolve(token.value) : fetchToken(signal);

  /** GETs a metadata path with the token; on 401 (token expired or revoked) fetches a new one and retries once. */
  const get = async (path: string, signal: AbortSignal): Promise<MetadataResponse> => {
    const send = (value: string) => metadataRequest(`${baseUrl}${path}`, { headers: { "X-aws-ec2-metadata-token": value } }, signal);
    const res = await send(await currentToken(signal));
    if (res.status !== 401) return res;
    token = null;
    return send(await fetchToken(signal));
  };

  const instanceAction = async (signal: AbortSignal): Promise<Observation | null> => {
    const res = await get(INSTANCE_ACTION_PATH, signal);
    if (res.status === 404) return null;
    const body = res.status === 200 ? parseJsonObject(res.body) : null;
    if (body === null) throw new Error(`${INSTANCE_ACTION_PATH} answered ${res.status}${res.status === 200 ? " with a body that is not JSON" : ""}`);
    const action = typeof body.action === "string" && body.action !== "" ? body.action : "unknown";
    const time = typeof body.time === "string" ? body.time : "";
    return { key: `instance-action:${action}:${time}`, action, deadline: toIsoDate(time), detail: body, drain: true };
  };

  const rebalance = async (signal: AbortSignal): Promise<Observation | null> => {
    const res = await get(REBALANCE_PATH, signal);
    if (res.status === 404) return null;
    const body = res.status === 200 ? parseJsonObject(res.body) : null;
    if (body === null) throw new Error(`${REBALANCE_PATH} answered ${res.status}${res.status === 200 ? " with a body that is not JSON" : ""}`);
    const noticeTime = typeof body.noticeTime === "string" ? body.noticeTime : "";
    return { key: `rebalance:${noticeTime}`, action: "rebalance", deadline: null, detail: body, drain: false };
  };

  return {
    provider: "aws",
    url: baseUrl,
    async poll(signal: AbortSignal): Promise<PollResult> {
      // Sequential, so the first poll fetches one token rather than two racing for it. After a failure
      // the second request is skipped: the server is down or misbehaving, and the next poll tries again.
      const observations: Observation[] = [];
      for (const probe of [instanceAction, rebalance]) {
        try {
          const found = await probe(signal);
          if (found !== null) observations.push(found);
        } catch (err) {
          if (signal.aborted) throw err;
          return { observations, error: describeError(err) };
        }
      }
      return { observations, error: null };
    },
  };
}
