import { ResponseEngines } from "./proxy/stored-responses.ts";
import { SPOT_PATH, type Heartbeat, type SpotNotice } from "../../schema/contracts/heartbeat.ts";
import type { BackplaneConfig } from "./config.ts";
import { Drainer, type DrainResult } from "./drain/drainer.ts";
import { EnginePool } from "./engines/pool.ts";
import { createGatewayClient, type GatewayClient } from "./heartbeat/gateway-client.ts";
import { HeartbeatSender } from "./heartbeat/sender.ts";
import { createLog, type Log } from "./log.ts";
import { LoraAdapterRoutes } from "./management/adapters.ts";
import { createBackplaneMetrics } from "./metrics/backplane.ts";
import { GpuSampler } from "./metrics/gpu.ts";
import { StreamReports } from "./proxy/reports.ts";
import { BackplaneServer } from "./server.ts";
import { BackplaneTracer } from "./tracing/tracer.ts";
import { startSpotWatchers, type SpotWatcherHandle } from "./spot/index.ts";

/** A running backplane: engines, HTTP server, heartbeats, spot watchers. */
export interface Daemon {
  readonly url: string;
  readonly config: BackplaneConfig;
  readonly pool: EnginePool;
  readonly drainer: Drainer;
  /** The heartbeat this node would send now. */
  heartbeat(): Heartbeat;
  /** Drains (no new requests, accepted ones finish within the grace period), then closes. */
  drainAndClose(reason: string): Promise<DrainResult>;
  /** Closes at once; open responses are cut (second signal). */
  abort(): Promise<void>;
  /** Stops everything; safe to call twice. */
  close(): Promise<void>;
}

/** Starts the backplane described by `config`. Resolves once engines were probed and the server listens. */
export async function startDaemon(config: BackplaneConfig, opts: { log?: Log } = {}): Promise<Daemon> {
  const log = opts.log ?? createLog(config.logLevel);
  let sender: HeartbeatSender | null = null;
  const pool = new EnginePool({
    engines: config.engines,
    settings: config,
    // The pool gives each event its level (errors as error); passing `log` as is keeps it.
    log,
    onChange: () => void sender?.sendNow(),
  });
  await pool.start();
  const drainer = new Drainer({ pool, graceMs: config.drainGraceMs, log, onStart: () => void sender?.sendNow() });
  const metrics = createBackplaneMetrics(pool, () => drainer.draining, new GpuSampler(config.nvidiaSmiPath));
  const reports = new StreamReports({ onEvent: (event) => metrics.streamReports.inc({ event }) });
  const status = () => (drainer.draining ? "draining" : pool.status());
  const tracer = config.tracing ? new BackplaneTracer(config.tracing, { nodeId: config.nodeId, region: config.region }, log) : null;
  const heartbeat = (): Heartbeat => ({
    nodeId: config.nodeId,
    region: config.region,
    url: config.publicUrl,
    status: status(),
    models: pool.models(),
    intervalMs: config.heartbeatIntervalMs,
    sentAt: Date.now(),
    engines: pool.reports(),
  });

  const server = new BackplaneServer({
    config,
    log,
    proxy: { pool, config, metrics, log, isDraining: () => drainer.draining, reports, responses: new ResponseEngines(), tracer },
    management: {
      pool,
      nvidiaSmiPath: config.nvidiaSmiPath,
      onModelsChanged: (engineId) => void pool.probeNow(engineId).then(() => sender?.sendNow()),
      adapters: new LoraAdapterRoutes(pool, log),
    },
    health: () => {
      const s = status();
      return { ok: s === "ready" || s === "degraded", body: { status: s, node_id: config.nodeId, region: config.region, draining_reason: drainer.why, engines: pool.reports() } };
    },
    metrics: (format) => metrics.registry.render(format),
  });
  let url: string;
  try {
    url = await server.listen();
  } catch (err) {
    await pool.close();
    throw err;
  }

  const gateway: GatewayClient | null = config.gatewayUrl ? createGatewayClient(config.gatewayUrl, config.nodeId, config.secret) : null;
  if (gateway) {
    sender = new HeartbeatSender({
      client: gateway,
      intervalMs: config.heartbeatIntervalMs,
      build: heartbeat,
      log,
      onResult: (ok) => metrics.heartbeats.inc({ result: ok ? "ok" : "failed" }),
    });
    sender.start();
  } else {
    log("heartbeats_off", { why: "no --gateway-url" }, "warn");
  }

  const onSpot = (notice: SpotNotice, drain: boolean) => {
    log("spot_notice", { provider: notice.provider, action: notice.action, deadline: notice.deadline, drain }, "warn");
    if (drain) void drainer.start(`spot:${notice.provider}`);
    if (gateway) {
      void gateway.post(SPOT_PATH, notice, 10_000).then(
        (res) => log("spot_reported", { status: res.status }, res.ok ? "info" : "warn"),
        (err: unknown) => log("spot_report_failed", { error: String(err) }, "warn"),
      );
    }
  };
  const spot: SpotWatcherHandle = startSpotWatchers(config.spot, config.nodeId, onSpot, log);

  log("backplane_listening", { url, nodeId: config.nodeId, region: config.region, engines: config.engines.map((e) => `${e.id}=${e.url}`) }, "info");

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      await spot.close();
      sender?.close();
      // After the server: a report a gateway still waits for is given when its stream ends.
      await server.close();
      reports.close();
      // The last requests' traces go out before the process exits.
      await tracer?.close();
      await pool.close();
    })());
  return {
    url,
    config,
    pool,
    drainer,
    heartbeat,
    async drainAndClose(reason) {
      const result = await drainer.start(reason);
      // A last beat so the gateway sees the drain even if the periodic one was just missed.
      await sender?.sendNow();
      await close();
      return result;
    },
    async abort() {
      server.destroy();
      await close();
    },
    close,
  };
}
