/** Helpers of the admin API tests: calls as the operator or a tenant admin key, and fresh tenants. */
import "../support/provided-context.ts";
import { exports } from "cloudflare:workers";
import { expect, inject } from "vitest";
import { gateway } from "./helpers.ts";
import type { ApiKeyJson } from "../../worker/src/admin/wire.ts";

/** A response with its parsed JSON body. */
export interface JsonResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

/** Calls `/admin…` with `token` (the operator's ADMIN_TOKEN by default; null sends none). */
export async function admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown, token?: string | null): Promise<JsonResponse<T>> {
  const headers = new Headers();
  const credential = token === undefined ? inject("adminToken") : token;
  if (credential !== null) headers.set("authorization", `Bearer ${credential}`);
  if (body !== undefined) headers.set("content-type", "application/json");
  const res = await exports.default.fetch(
    new Request(`http://gateway.test/admin${path}`, { method, headers, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) }),
  );
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

/** An OpenAI-shaped error body. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

/** The fields every admin list has. */
export interface List<T> {
  object: "list";
  data: T[];
  next_cursor: string | null;
}

/** A key as the API shows it (with the full key only in the creation answer). */
export type KeyJson = ApiKeyJson & { key?: string };

/** A tenant made through the API, with one environment, a chat key and an admin-scoped key. */
export interface Sandbox {
  tenantId: string;
  environmentId: string;
  key: string;
  keyId: string;
  adminKey: string;
  adminKeyId: string;
}

let counter = 0;

/** A unique, readable name. */
export function unique(prefix: string): string {
  counter++;
  return `${prefix}-${counter}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Asserts the status and returns the body (with the error's message in the failure output). */
export function expectStatus<T>(res: JsonResponse<T>, status: number): T {
  expect({ status: res.status, body: res.body }).toMatchObject({ status });
  return res.body;
}

/** Creates a tenant, an environment, a chat key and an admin key through the API (as the operator). */
export async function sandbox(name = unique("tenant")): Promise<Sandbox> {
  const tenant = expectStatus(await admin<{ id: string }>("POST", "/tenants", { name }), 201);
  const env = expectStatus(await admin<{ id: string }>("POST", "/environments", { tenant_id: tenant.id, name: "prod" }), 201);
  const key = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: env.id, name: "app" }), 201);
  const adminKey = expectStatus(await admin<KeyJson>("POST", "/keys", { environment_id: env.id, name: "ops", scopes: ["admin"] }), 201);
  return { tenantId: tenant.id, environmentId: env.id, key: key.key ?? "", keyId: key.id, adminKey: adminKey.key ?? "", adminKeyId: adminKey.id };
}

/**
 * Polls GET /v1/models with `key` until it answers `status`; returns how long that took. Fails
 * after `withinMs` (the promise of the admin API: changes reach the gateway within 5 s).
 */
export async function modelsStatusBecomes(key: string, status: number, withinMs = 5_000): Promise<{ elapsedMs: number; body: unknown }> {
  const started = Date.now();
  for (;;) {
    const res = await gateway("/v1/models", { key });
    const body: unknown = await res.json();
    if (res.status === status) return { elapsedMs: Date.now() - started, body };
    if (Date.now() - started > withinMs) throw new Error(`GET /v1/models still answers ${res.status} after ${withinMs} ms: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
