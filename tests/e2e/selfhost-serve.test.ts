/**
 * `npm run serve`, the self-hosted gateway (docs/self-hosting.md), as a real child process: a release
 * built by `npm run gateway -- build`, a fresh database and Redis prefix, the worker on plain
 * workerd with its Durable Objects on disk, and the scheduled job fired by the serve process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { and, eq } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { deleteRedisPrefix } from "../../bench/teardown.ts";
import { openDb } from "../../dev/db.ts";
import { createDatabase, dropDatabase } from "../../dev/postgres.ts";
import { auditLogs } from "../../schema/tables/index.ts";
import { ROOT } from "../../worker/selfhost/bundle.ts";
import { PG_ADMIN_URL, REDIS_URL, uniqueSuffix } from "../support/fixtures.ts";

const SERVE = join(ROOT, "worker/selfhost/serve.ts");
const GATEWAY = join(ROOT, "worker/selfhost/main.ts");

const suffix = uniqueSuffix();
const databaseName = `sy_selfhost_${suffix}`;
const redisPrefix = `sy:selfhost:${suffix}:`;
const adminToken = randomBytes(32).toString("hex");
const nodeSigningSecret = randomBytes(32).toString("hex");
const dashboardSecret = randomBytes(32).toString("hex");
let databaseUrl = "";
let dataDir = "";

/** A serve process and the JSON lines it printed. */
interface Served {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the first line matching, or rejects after timeoutMs (or when the process exits). */
  waitFor(match: (event: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: Served[] = [];

function serve(args: string[], env: Record<string, string> = {}): Served {
  const child = spawn(process.execPath, [SERVE, ...args], {
    cwd: ROOT,
    // A clean environment: the runner's own variables (a REDIS_PREFIX, say) must not leak in as var overrides.
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", DATABASE_URL: databaseUrl, REDIS_URL, NODE_SIGNING_SECRET: nodeSigningSecret, ADMIN_TOKEN: adminToken, DASHBOARD_SECRET: dashboardSecret, REDIS_PREFIX: redisPrefix, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      for (const wake of waiters) wake();
    });
  }
  const exit = once(child, "exit").then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const served: Served = {
    child,
    lines,
    exit,
    waitFor: (match, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = () => {
          for (const line of lines) {
            let event: Record<string, unknown>;
            try {
              event = JSON.parse(line) as Record<string, unknown>;
            } catch {
              continue;
            }
            if (match(event)) {
              done();
              resolve(event);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no matching line within ${timeoutMs} ms; output:\n${lines.join("\n")}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        void exit.then(({ code }) => {
          check();
          if (waiters.has(check)) {
            done();
            reject(new Error(`serve exited (${code}) first; output:\n${lines.join("\n")}`));
          }
        });
        check();
      }),
  };
  started.push(served);
  return served;
}

async function listening(served: Served): Promise<string> {
  const event = await served.waitFor((e) => e.event === "gateway.listening", 60_000);
  return String(event.url);
}

beforeAll(async () => {
  databaseUrl = await createDatabase(PG_ADMIN_URL, databaseName);
  dataDir = await mkdtemp(join(tmpdir(), "sy-selfhost-"));
  // The release the service would run: bundled once, then started from its folder.
  const build = spawn(process.execPath, [GATEWAY, "build", "--data-dir", dataDir, "--version", "test-1", "--activate"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  build.stdout.on("data", (b: Buffer) => (output += b.toString()));
  build.stderr.on("data", (b: Buffer) => (output += b.toString()));
  const [code] = (await once(build, "exit")) as [number | null];
  if (code !== 0) throw new Error(`gateway build failed (${code}):\n${output}`);
}, 120_000);

afterEach(async () => {
  for (const s of started.splice(0)) {
    if (s.child.exitCode === null && s.child.signalCode === null) {
      s.child.kill("SIGKILL");
      await s.exit;
    }
  }
});

afterAll(async () => {
  await dropDatabase(PG_ADMIN_URL, databaseName);
  await deleteRedisPrefix(REDIS_URL, redisPrefix);
  if (dataDir !== "") await rm(dataDir, { recursive: true, force: true });
});

describe("npm run serve", () => {
  it("serves the worker from a release, answers admin and API calls, runs the scheduled job, and stops cleanly on SIGTERM", { timeout: 120_000 }, async () => {
    const served = serve(["--bundle", join(dataDir, "current"), "--data-dir", dataDir, "--port", "0", "--cron-interval-ms", "1000"]);
    const url = await listening(served);
    expect(served.lines.some((l) => l.includes('"event":"gateway.release"') && l.includes('"version":"test-1"'))).toBe(true);

    const health = await fetch(`${url}/health?deep=1`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok", checks: { redis: "ok", postgres: "ok" } });

    // A well-formed key that does not exist.
    const badKey = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer sk-sy-${randomBytes(24).toString("hex")}` } });
    expect(badKey.status).toBe(401);
    expect(((await badKey.json()) as { error: { code: string } }).error.code).toBe("invalid_api_key");

    const wrongAdmin = await fetch(`${url}/admin/tenants`, { headers: { authorization: `Bearer ${randomBytes(32).toString("hex")}` } });
    expect(wrongAdmin.status).toBe(401);
    const admin = async <T>(path: string, body: unknown): Promise<T> => {
      const res = await fetch(`${url}/admin${path}`, { method: "POST", headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(res.status, `POST /admin${path}`).toBeLessThan(300);
      return (await res.json()) as T;
    };
    const tenant = await admin<{ id: string }>("/tenants", { name: "Self-hosted Co" });
    const environment = await admin<{ id: string }>("/environments", { tenant_id: tenant.id, name: "prod" });
    const key = await admin<{ key: string }>("/keys", { environment_id: environment.id, name: "backend" });
    const models = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key.key}` } });
    expect(models.status).toBe(200);
    expect(await models.json()).toMatchObject({ object: "list", data: expect.any(Array) as unknown });

    // The refused key's audit event waits in Redis until the scheduled job moves it to Postgres.
    const db = openDb(databaseUrl);
    try {
      const deadline = Date.now() + 20_000;
      let rows: { action: string }[] = [];
      while (rows.length === 0 && Date.now() < deadline) {
        rows = await db.db.select().from(auditLogs).where(and(eq(auditLogs.action, "auth.failure"), eq(auditLogs.targetId, "GET /v1/models")));
        if (rows.length === 0) await new Promise((r) => setTimeout(r, 250));
      }
      expect(rows).toHaveLength(1);
    } finally {
      await db.close();
    }
    const cronDone = await served.waitFor((e) => e.event === "cron.done" && e.cron === "* * * * *", 5_000);
    expect(cronDone).toMatchObject({ level: "info", duration_ms: expect.any(Number) as unknown });

    // Durable Objects live on disk under the data folder, one folder per class.
    expect((await readdir(join(dataDir, "durable-objects"))).sort()).toEqual(["switchyard-EdgeQueue", "switchyard-FedattnIndex", "switchyard-FedattnSession"]);

    const workerdPid = Number((await served.waitFor((e) => e.event === "gateway.listening", 1_000)).workerd_pid);
    const stopAsked = Date.now();
    served.child.kill("SIGTERM");
    expect(await served.exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - stopAsked).toBeLessThan(10_000);
    expect(served.lines.some((l) => l.includes('"event":"gateway.stopped"'))).toBe(true);
    expect(() => process.kill(workerdPid, 0)).toThrow();
    await expect(fetch(`${url}/health`)).rejects.toThrow();

    // Nothing secret reached the log.
    const log = served.lines.join("\n");
    for (const secret of [adminToken, nodeSigningSecret, dashboardSecret, key.key]) expect(log).not.toContain(secret);
    expect(log).not.toContain("gateway.dashboard_sso_off");
  });

  it("serves the dashboard from a release: the sign-in page, its script, and sign-in with the admin token, also behind a TLS proxy", { timeout: 120_000 }, async () => {
    const served = serve(["--bundle", join(dataDir, "current"), "--data-dir", dataDir, "--port", "0", "--no-migrate"]);
    const url = await listening(served);
    const cookies = new Map<string, string>();
    const keep = (res: Response) => {
      for (const line of res.headers.getSetCookie()) {
        const [pair = ""] = line.split(";");
        const eq = pair.indexOf("=");
        if (/max-age=0/i.test(line) || pair.slice(eq + 1) === "") cookies.delete(pair.slice(0, eq));
        else cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
      }
    };
    const cookie = () => [...cookies].map(([k, v]) => `${k}=${v}`).join("; ");

    const login = await fetch(`${url}/dashboard/login`, { redirect: "manual" });
    expect(login.status).toBe(200);
    expect(login.headers.get("content-type")).toMatch(/^text\/html/);
    keep(login);
    const loginHtml = await login.text();
    expect(loginHtml).toContain("<h1");
    expect(cookies.has("__Host-switchyard_login")).toBe(true);

    // The browser bundle went into the release: the page names it by its content hash.
    const script = /<script[^>]* src="(\/dashboard\/assets\/app\.[0-9a-f]+\.js)"/.exec(loginHtml)?.[1];
    expect(script, loginHtml).toBeDefined();
    const js = await fetch(`${url}${script ?? ""}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect((await js.text()).length).toBeGreaterThan(1000);
    const style = /<link[^>]* href="(\/dashboard\/assets\/app\.[0-9a-f]+\.css)"/.exec(loginHtml)?.[1];
    expect((await fetch(`${url}${style ?? "/dashboard/assets/none.css"}`)).status).toBe(200);

    const loginToken = /name="_login" value="([^"]+)"/.exec(loginHtml)?.[1] ?? "";
    const signIn = await fetch(`${url}/dashboard/login`, {
      method: "POST",
      headers: { cookie: cookie(), "content-type": "application/x-www-form-urlencoded", origin: url },
      body: new URLSearchParams({ _login: loginToken, token: adminToken }).toString(),
      redirect: "manual",
    });
    expect(signIn.status, await signIn.text()).toBe(303);
    keep(signIn);
    expect(cookies.has("__Host-switchyard_session")).toBe(true);
    const home = await fetch(`${url}/dashboard`, { headers: { cookie: cookie() }, redirect: "manual" });
    expect(home.status).toBe(200);
    const homeHtml = await home.text();
    const csrf = /name="_csrf" value="([^"]+)"/.exec(homeHtml)?.[1] ?? "";
    expect(csrf).not.toBe("");

    // A form posted through a TLS-terminating proxy: the browser's Origin is https://…, and serve has
    // workerd take the scheme from X-Forwarded-Proto, so the same-origin check accepts it.
    const httpsOrigin = `https://${new URL(url).host}`;
    const create = (headers: Record<string, string>) =>
      fetch(`${url}/dashboard/tenants`, {
        method: "POST",
        headers: { cookie: cookie(), "content-type": "application/x-www-form-urlencoded", origin: httpsOrigin, ...headers },
        body: new URLSearchParams({ _csrf: csrf, name: "Proxied Co" }).toString(),
        redirect: "manual",
      });
    const direct = await create({});
    expect(direct.status).toBe(403);
    expect(await direct.text()).toContain("came from another site");
    const proxied = await create({ "x-forwarded-proto": "https" });
    expect(proxied.status, await proxied.text()).toBe(303);
    expect(proxied.headers.get("location")).toMatch(/^\/dashboard\/tenants\//);
    const tenants = await fetch(`${url}/admin/tenants`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(JSON.stringify(await tenants.json())).toContain("Proxied Co");

    const log = served.lines.join("\n");
    for (const secret of [adminToken, dashboardSecret]) expect(log).not.toContain(secret);
  });

  it("exits non-zero when workerd dies, so the service manager restarts the whole gateway", { timeout: 60_000 }, async () => {
    // Without DASHBOARD_SECRET (an env file from before the dashboard) it starts and says SSO is off.
    const served = serve(["--bundle", join(dataDir, "current"), "--data-dir", dataDir, "--port", "0", "--no-migrate"], { DASHBOARD_SECRET: "" });
    await listening(served);
    expect(await served.waitFor((e) => e.event === "gateway.dashboard_sso_off", 1_000)).toMatchObject({ level: "info" });
    const workerdPid = Number((await served.waitFor((e) => e.event === "gateway.listening", 1_000)).workerd_pid);
    process.kill(workerdPid, "SIGKILL");
    expect(await served.exit).toEqual({ code: 1, signal: null });
    expect(await served.waitFor((e) => e.event === "gateway.workerd_exited", 1_000)).toMatchObject({ level: "error", signal: "SIGKILL" });
  });

  it("refuses to start without its required settings, naming them", async () => {
    const missing = serve(["--data-dir", dataDir], { DATABASE_URL: "" });
    expect((await missing.exit).code).toBe(2);
    expect(missing.lines.join("\n")).toContain("DATABASE_URL (or --database-url) is required");

    const tls = serve(["--data-dir", dataDir], { DATABASE_URL: `${databaseUrl}?sslmode=require` });
    expect((await tls.exit).code).toBe(2);
    expect(tls.lines.join("\n")).toContain("sslmode=require");

    const weak = serve(["--data-dir", dataDir], { ADMIN_TOKEN: "short" });
    expect((await weak.exit).code).toBe(2);
    expect(weak.lines.join("\n")).toContain("ADMIN_TOKEN must be set to at least 32 characters");

    const weakDashboard = serve(["--data-dir", dataDir], { DASHBOARD_SECRET: "short" });
    expect((await weakDashboard.exit).code).toBe(2);
    expect(weakDashboard.lines.join("\n")).toContain("DASHBOARD_SECRET must be at least 32 characters when set");

    const unknownVar = serve(["--bundle", join(dataDir, "current"), "--data-dir", dataDir, "--port", "0", "--no-migrate", "--var", "NO_SUCH_VAR=1"]);
    expect((await unknownVar.exit).code).toBe(2);
    expect(unknownVar.lines.join("\n")).toContain("--var NO_SUCH_VAR: wrangler.toml has no such var");
    expect(existsSync(join(dataDir, "current"))).toBe(true);
  });
});
