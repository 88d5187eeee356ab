/**
 * Signed calls from the gateway to a backplane's `/management/…` routes (backplane/src/management/),
 * which check the gateway's signature exactly like inference requests (schema/contracts/signing.ts).
 */
import { ApiError } from "../errors.ts";
import type { RequestDeps } from "../platform/deps.ts";
import { forwardToBackplane, UNREACHABLE_MESSAGE } from "../proxy/forward.ts";
import type { NodeEntry } from "../routing/snapshot.ts";

/** A node's answer to a management call: its status and JSON body (null when it sent none). */
export interface ManagementAnswer {
  status: number;
  body: unknown;
}

type ManagementDeps = Pick<RequestDeps, "requestId" | "secrets">;
type Method = "GET" | "POST" | "DELETE";

/** The gateway's error for a node that failed before answering, naming the node (an operator manages that one node). */
function nodeFailure(node: NodeEntry, err: unknown, timeoutMs: number): unknown {
  if (!(err instanceof ApiError)) return err;
  if (err.code === "upstream_timeout") return new ApiError("upstream_timeout", `Node ${node.id} did not answer within ${timeoutMs / 1000} s.`);
  if (err.message === UNREACHABLE_MESSAGE) return new ApiError("upstream_error", `Node ${node.id} could not be reached at ${node.url}.`);
  return new ApiError(err.code, `Node ${node.id}: ${err.message}`, { headers: err.headers, status: err.statusOverride });
}

/**
 * Sends `method path` to `node`'s backplane, signed with the node's secret, and returns its response
 * unread: a 2xx, or a 4xx (the node's verdict: not found, conflict…). `timeoutMs` bounds the wait for
 * the node's headers only, so a body that streams for minutes (a model pull's progress) is not cut
 * off; `signal` aborts the call, body included. An unreachable node, a 5xx or no headers within
 * `timeoutMs` throw the gateway's ApiError naming the node (502 `upstream_error`, 504 `upstream_timeout`).
 */
export async function openNodeManagement(
  deps: ManagementDeps,
  node: NodeEntry,
  method: Method,
  path: string,
  body: unknown,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Response> {
  try {
    const { response } = await forwardToBackplane(
      {
        method,
        path,
        body: body === undefined ? "" : JSON.stringify(body),
        requestId: deps.requestId,
        masterSecret: deps.secrets.nodeSigning,
        // The node answers once the engine did (loading an adapter can take a while).
        connectTimeoutMs: timeoutMs,
        clientSignal: signal,
        maxAttempts: 1,
        deadlineMs: timeoutMs,
        relayClientErrors: true,
      },
      [node],
    );
    return response;
  } catch (err) {
    throw nodeFailure(node, err, timeoutMs);
  }
}

/** Reads a node's management response whole as a ManagementAnswer (a body that is not JSON becomes the error message). */
export async function readManagementAnswer(response: Response): Promise<ManagementAnswer> {
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    parsed = { error: { message: text.slice(0, 500) } };
  }
  return { status: response.status, body: parsed };
}

/**
 * Calls `method path` on `node`'s backplane (openNodeManagement) and reads its JSON answer. A 2xx or
 * 4xx is returned; an unreachable node, a 5xx or no answer within `timeoutMs` throws.
 */
export async function callNodeManagement(
  deps: ManagementDeps,
  node: NodeEntry,
  method: Method,
  path: string,
  body: unknown,
  timeoutMs: number,
): Promise<ManagementAnswer> {
  return readManagementAnswer(await openNodeManagement(deps, node, method, path, body, timeoutMs));
}

/** The `error.message` of a node's OpenAI-shaped error body, or a fallback naming the status. */
export function managementError(answer: ManagementAnswer): string {
  const message = (answer.body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof message === "string" && message !== "" ? message : `the node answered ${answer.status}`;
}
