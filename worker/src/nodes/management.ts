/**
 * Signed calls from the gateway to a backplane's `/management/…` routes (backplane/src/management/),
 * which check the gateway's signature exactly like inference requests (schema/contracts/signing.ts).
 */
import type { RequestDeps } from "../platform/deps.ts";
import { forwardToBackplane } from "../proxy/forward.ts";
import type { NodeEntry } from "../routing/snapshot.ts";

/** A node's answer to a management call: its status and JSON body (null when it sent none). */
export interface ManagementAnswer {
  status: number;
  body: unknown;
}

/**
 * Calls `method path` on `node`'s backplane, signed with the node's secret, and reads its JSON answer.
 * A 2xx or 4xx (the node's verdict: not found, conflict…) is returned; an unreachable node, a 5xx or
 * no answer within `timeoutMs` throws the gateway's ApiError (502 `upstream_error`, 504 `upstream_timeout`).
 */
export async function callNodeManagement(
  deps: Pick<RequestDeps, "requestId" | "secrets">,
  node: NodeEntry,
  method: "GET" | "POST" | "DELETE",
  path: string,
  body: unknown,
  timeoutMs: number,
): Promise<ManagementAnswer> {
  const { response } = await forwardToBackplane(
    {
      method,
      path,
      body: body === undefined ? "" : JSON.stringify(body),
      requestId: deps.requestId,
      masterSecret: deps.secrets.nodeSigning,
      // The node answers once the engine did (loading an adapter can take a while).
      connectTimeoutMs: timeoutMs,
      clientSignal: undefined,
      maxAttempts: 1,
      deadlineMs: timeoutMs,
      relayClientErrors: true,
    },
    [node],
  );
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    parsed = { error: { message: text.slice(0, 500) } };
  }
  return { status: response.status, body: parsed };
}

/** The `error.message` of a node's OpenAI-shaped error body, or a fallback naming the status. */
export function managementError(answer: ManagementAnswer): string {
  const message = (answer.body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof message === "string" && message !== "" ? message : `the node answered ${answer.status}`;
}
