/**
 * What a chaos scenario reads from a running stack besides its clients' answers: the nodes as the
 * gateway's admin API shows them, an engine's running requests, and a budgeted key made through the
 * admin API.
 */
import type { Stack, StackNode } from "../../dev/stack.ts";

/** A node as `GET /admin/nodes` shows it (the fields the scenarios read). */
export interface AdminNode {
  id: string;
  url: string;
  stale: boolean;
  healthy: boolean;
  reported_status: string | null;
  heartbeat_age_ms: number | null;
  circuit: string;
}

/** `GET /admin/nodes` with the operator token. */
export async function adminNodes(stack: Stack): Promise<AdminNode[]> {
  const res = await fetch(`${stack.gatewayUrl}/admin/nodes`, { headers: { authorization: `Bearer ${stack.adminToken}` }, signal: AbortSignal.timeout(15_000) });
  if (!res.ok) throw new Error(`GET /admin/nodes answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { data: AdminNode[] }).data;
}

/** Requests the engine of `node` is running now (its `vllm:num_requests_running`). */
export async function engineRunning(node: StackNode): Promise<number> {
  const text = await (await fetch(`${node.simUrl}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
  return [...text.matchAll(/^vllm:num_requests_running(?:\{[^}]*\})? (\S+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

/** The nodes' health as the gateway sees it, for a report. */
export async function nodeSummary(stack: Stack): Promise<Record<string, string>> {
  const nodes = await adminNodes(stack).catch((err: unknown) => [{ id: "error", detail: String(err) }]);
  return Object.fromEntries(
    nodes.map((n) => ("detail" in n ? [n.id, n.detail] : [n.id, `${n.healthy ? "healthy" : "not routable"} (${n.reported_status ?? "no status"}, ${n.stale ? "stale" : "fresh"}, heartbeat ${n.heartbeat_age_ms ?? "?"} ms ago, circuit ${n.circuit})`])),
  );
}

/** A key of the demo tenant's environment with a tokens-per-day budget, made through the admin API as an operator would. */
export async function budgetedKey(stack: Stack, tokensPerDay: number): Promise<string> {
  const admin = (path: string, body: unknown) =>
    fetch(`${stack.gatewayUrl}/admin${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  const created = await admin("/keys", { environment_id: "env_demo_dev", name: "chaos-budgeted" });
  if (created.status !== 201) throw new Error(`POST /admin/keys answered ${created.status}: ${await created.text()}`);
  const key = (await created.json()) as { id: string; key: string };
  const budget = await admin("/budgets", { scope: "key", scope_id: key.id, kind: "tokens", period: "day", amount: tokensPerDay });
  if (budget.status !== 201) throw new Error(`POST /admin/budgets answered ${budget.status}: ${await budget.text()}`);
  return key.key;
}
