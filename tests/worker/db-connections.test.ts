/**
 * The isolate's Postgres connection cap (platform/deps.ts MAX_DB_CONNECTIONS = 4) under a burst of
 * requests that each need the database: the ones queued behind the cap must open their connection
 * in their own request (Workers refuse I/O across requests), and none may fail.
 */
import { it, expect } from "vitest";
import { sandbox } from "./admin-helpers.ts";
import { gateway, post } from "./helpers.ts";
it("serves a burst of twelve Postgres-backed requests in one isolate, three times its connection cap", async () => {
  const s = await sandbox();
  const res = await Promise.all(Array.from({ length: 12 }, (_, i) => post("/v1/memory/breadcrumb", { source: "burst", target: "t", content: `c ${i}` }, s.key)));
  const statuses = res.map((r) => r.status);
  const bodies = await Promise.all(res.map((r) => r.text()));
  expect({ statuses, failed: bodies.find((b) => !b.includes("memory.breadcrumb")) ?? null }).toEqual({ statuses: Array(12).fill(200), failed: null });
  const hot = await (await gateway("/v1/memory/trails/hot?min_temp=0", { key: s.key })).json<{ trails: { breadcrumbs: number }[] }>();
  expect(hot.trails[0]?.breadcrumbs).toBe(12);
});
