/**
 * The GPU hosts of the local stack: each node is a simulated engine with a backplane in front of it,
 * registered with the gateway by its own heartbeats. Tests kill, drain, restart and stall them.
 */
import { createServer } from "node:net";
import { eq } from "drizzle-orm";
import type { Redis } from "ioredis";
import { deriveNodeSecret } from "../schema/contracts/signing.ts";
import { nodes } from "../schema/tables/index.ts";
import { liveNodesKey } from "../worker/src/nodes/live.ts";
import type { NodeDb } from "./db.ts";
import { freePort, waitForHttp } from "./ports.ts";
import { startChild, type Child } from "./processes.ts";

/** One node of the local stack. */
export interface LocalNodeSpec {
  id: string;
  region: string;
  /** Flags for its simulated engine. */
  simArgs: string[];
  /** BACKPLANE_* settings on top of the ones the stack sets. */
  backplaneEnv: Record<string, string>;
  /** Names of its two processes in the output prefix and in `stack.children`. */
  simName: string;
  backplaneName: string;
}

/** What all nodes share. */
export interface LocalNodeContext {
  root: string;
  host: string;
  gatewayUrl: string;
  /** The gateway's NODE_SIGNING_SECRET; each node signs with the secret derived from it. */
  masterSecret: string;
  echo: boolean;
  db: NodeDb;
  redis: Redis;
  redisPrefix: string;
}

/**
 * `running`: both processes up. `paused`: the engine is stopped with SIGSTOP (it accepts connections
 * but never answers). `stopped`: the backplane is gone, the engine still runs. `down`: the engine is
 * gone (after killNode, both are).
 */
export type NodeState = "running" | "paused" | "stopped" | "down";

/** A node of the local stack as tests see it. URLs stay the same across restarts unless the port was taken meanwhile. */
export interface StackNode {
  readonly id: string;
  readonly region: string;
  readonly backplaneUrl: string;
  readonly simUrl: string;
  /** The current processes (a restart replaces them). */
  readonly backplane: Child;
  readonly sim: Child;
  readonly state: NodeState;
}

const BACKPLANE_DRAIN_GRACE_DEFAULT_MS = 30_000;

/** Resolves when the child has exited (at once if it already has). */
function exited(child: Child): Promise<void> {
  if (!child.alive()) return Promise.resolve();
  return new Promise((resolve) => child.process.once("exit", () => resolve()));
}

function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** The port a process had before, when it is still free; otherwise a new one. */
async function reusablePort(host: string, previous: number): Promise<number> {
  if (previous !== 0 && (await portIsFree(host, previous))) return previous;
  return freePort(host);
}

/** A node of the local stack and its processes; `close()` stops them and is safe to call twice. */
export class LocalNode implements StackNode {
  readonly id: string;
  readonly region: string;
  private readonly spec: LocalNodeSpec;
  private readonly ctx: LocalNodeContext;
  private simPort = 0;
  private backplanePort = 0;
  private simChild: Child | null = null;
  private backplaneChild: Child | null = null;
  private paused = false;
  private closing: Promise<void> | null = null;

  constructor(spec: LocalNodeSpec, ctx: LocalNodeContext) {
    this.id = spec.id;
    this.region = spec.region;
    this.spec = spec;
    this.ctx = ctx;
  }

  get simUrl(): string {
    return `http://${this.ctx.host}:${this.simPort}`;
  }

  get backplaneUrl(): string {
    return `http://${this.ctx.host}:${this.backplanePort}`;
  }

  get sim(): Child {
    if (!this.simChild) throw new Error(`node ${this.id} has no simulated engine yet`);
    return this.simChild;
  }

  get backplane(): Child {
    if (!this.backplaneChild) throw new Error(`node ${this.id} has no backplane yet`);
    return this.backplaneChild;
  }

  get state(): NodeState {
    if (!this.simChild?.alive()) return "down";
    if (this.paused) return "paused";
    return this.backplaneChild?.alive() ? "running" : "stopped";
  }

  /** Starts the simulated engine (on its previous port when that is free) and waits for its /health. */
  async startSim(): Promise<void> {
    if (this.simChild?.alive()) return;
    this.simPort = await reusablePort(this.ctx.host, this.simPort);
    const sim = startChild(this.spec.simName, ["backplane/src/main.ts", "sim", "--host", this.ctx.host, "--port", String(this.simPort), ...this.spec.simArgs], {
      cwd: this.ctx.root,
      echo: this.ctx.echo,
    });
    this.simChild = sim;
    this.paused = false;
    await waitForHttp(`${this.simUrl}/health`, 15_000, () => sim.alive());
  }

  /** Starts the backplane (on its previous port when that is free) and waits for its /health; it then registers itself by heartbeats. */
  async startBackplane(): Promise<void> {
    if (this.backplaneChild?.alive()) return;
    this.backplanePort = await reusablePort(this.ctx.host, this.backplanePort);
    const backplane = startChild(this.spec.backplaneName, ["backplane/src/main.ts", "start"], {
      cwd: this.ctx.root,
      echo: this.ctx.echo,
      env: {
        BACKPLANE_NODE_ID: this.id,
        BACKPLANE_REGION: this.region,
        BACKPLANE_SECRET: await deriveNodeSecret(this.ctx.masterSecret, this.id, 1),
        BACKPLANE_HOST: this.ctx.host,
        BACKPLANE_PORT: String(this.backplanePort),
        BACKPLANE_PUBLIC_URL: this.backplaneUrl,
        BACKPLANE_GATEWAY_URL: this.ctx.gatewayUrl,
        // A sim run with --scheduling-policy priority gets the gateway's ranks (docs/priority.md).
        BACKPLANE_ENGINES: `kind=sim,id=sim-0,url=${this.simUrl}${simPrioritized(this.spec.simArgs) ? ",priority=1" : ""}`,
        BACKPLANE_LOG_LEVEL: "warn",
        ...this.spec.backplaneEnv,
      },
    });
    this.backplaneChild = backplane;
    await waitForHttp(`${this.backplaneUrl}/health`, 15_000, () => backplane.alive());
  }

  /**
   * Waits until the gateway has registered the node: its `nodes` row has this URL and region and a
   * heartbeat time. With `since` (unix ms), the gateway must also have taken a heartbeat sent after
   * it (the live entry in Redis): Postgres keeps heartbeat times only now and then.
   */
  async waitRegistered(timeoutMs: number, since?: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const backplane = this.backplane;
    while (Date.now() < deadline) {
      if (!backplane.alive()) throw new Error(`the backplane of node ${this.id} exited before it registered\nbackplane output:\n${backplane.recentOutput()}`);
      const [row] = await this.ctx.db.db.select({ at: nodes.lastHeartbeatAt, url: nodes.url, region: nodes.regionId }).from(nodes).where(eq(nodes.id, this.id));
      // The URL changes on every run, so a row left by an earlier run does not count. A node given its
      // own BACKPLANE_PUBLIC_URL (a test reaching it through a proxy it can cut) registers that one.
      const url = this.spec.backplaneEnv.BACKPLANE_PUBLIC_URL ?? this.backplaneUrl;
      const registered = row?.at && row.url === url && row.region === this.region;
      if (registered && (since === undefined || (await this.lastLiveHeartbeat()) >= since)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`node ${this.id} did not register with the gateway within ${timeoutMs} ms\nbackplane output:\n${backplane.recentOutput()}`);
  }

  /** Gateway time (unix ms) of the node's last heartbeat in Redis, 0 when there is none. */
  private async lastLiveHeartbeat(): Promise<number> {
    const raw = await this.ctx.redis.hget(liveNodesKey(this.ctx.redisPrefix), this.id);
    if (raw === null) return 0;
    try {
      const at: unknown = (JSON.parse(raw) as { at?: unknown }).at;
      return typeof at === "number" ? at : 0;
    } catch {
      return 0;
    }
  }

  /** The host dies: SIGKILL to the backplane and the engine. Resolves once both are gone. */
  async kill(): Promise<void> {
    const children = [this.backplaneChild, this.simChild].filter((c): c is Child => c !== null);
    for (const child of children) child.process.kill("SIGKILL");
    await Promise.all(children.map(exited));
    this.paused = false;
  }

  /**
   * Graceful drain: SIGTERM to the backplane, which stops taking requests, lets accepted ones finish
   * within its drain grace and exits. Resolves when it has exited (SIGKILL if it outlives the grace
   * by 5 s). The engine keeps running.
   */
  async stop(): Promise<void> {
    const backplane = this.backplaneChild;
    if (!backplane?.alive()) return;
    const graceMs = Number(this.spec.backplaneEnv.BACKPLANE_DRAIN_GRACE_MS ?? BACKPLANE_DRAIN_GRACE_DEFAULT_MS);
    backplane.process.kill("SIGTERM");
    const killer = setTimeout(() => backplane.process.kill("SIGKILL"), graceMs + 5_000);
    await exited(backplane);
    clearTimeout(killer);
  }

  /**
   * Brings the node back to `running` with the same id (and the same ports when they are free):
   * resumes a paused engine, starts whatever process is gone, and waits until the gateway has taken
   * a heartbeat from the new backplane.
   */
  async start(): Promise<void> {
    if (this.paused) this.resume();
    const since = Date.now();
    const simUrl = this.simUrl;
    await this.startSim();
    // A backplane still pointing at the engine's old port must follow it.
    if (this.simUrl !== simUrl) await this.stop();
    if (this.backplaneChild?.alive()) return;
    await this.startBackplane();
    await this.waitRegistered(30_000, since);
  }

  /** Stalls the engine: SIGSTOP to the simulator. Connections are accepted by the kernel but never answered. */
  pause(): void {
    if (!this.simChild?.alive()) throw new Error(`node ${this.id}: its simulated engine is not running`);
    this.simChild.process.kill("SIGSTOP");
    this.paused = true;
  }

  /** SIGCONT to a paused simulator. */
  resume(): void {
    if (!this.simChild?.alive()) throw new Error(`node ${this.id}: its simulated engine is not running`);
    this.simChild.process.kill("SIGCONT");
    this.paused = false;
  }

  /** Stops the backplane (draining), then the engine. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      // A stopped process holds SIGTERM until it is continued.
      if (this.paused && this.simChild?.alive()) this.resume();
      await this.backplaneChild?.stop();
      await this.simChild?.stop();
    })());
  }
}

/** True when the sim's flags ask for vLLM's priority scheduling (its backplane engine then gets priority=1). */
function simPrioritized(args: readonly string[]): boolean {
  return args.some((arg, i) => arg === "--scheduling-policy=priority" || (arg === "--scheduling-policy" && args[i + 1] === "priority"));
}
