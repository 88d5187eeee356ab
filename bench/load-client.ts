import { Worker } from "node:worker_threads";
import type { LoadResult, LoadSpec } from "./load.ts";

/** Main thread → load thread. */
export interface LoadRequest {
  id: number;
  spec: LoadSpec;
}

/** Load thread → main thread. */
export type LoadReply = { id: number; result: LoadResult } | { id: number; error: string };

interface Pending {
  id: number;
  resolve: (result: LoadResult) => void;
  reject: (err: Error) => void;
}

/**
 * The load generator in its own thread. The local stack runs its Upstash-REST and Neon-WebSocket
 * adapters in this process (dev/stack.ts); on the main thread their work would sit in the client's
 * event loop and be timed as gateway latency. The thread and its keep-alive connections live across
 * runs, so a warm-up warms the connections the measured run uses.
 */
export class LoadClient {
  private readonly worker: Worker;
  private pending: Pending | null = null;
  private nextId = 1;
  private closing: Promise<void> | null = null;

  constructor() {
    this.worker = new Worker(new URL("./load-thread.ts", import.meta.url));
    this.worker.on("message", (reply: LoadReply) => {
      const pending = this.pending;
      if (!pending || pending.id !== reply.id) return;
      this.pending = null;
      if ("result" in reply) pending.resolve(reply.result);
      else pending.reject(new Error(`load thread failed: ${reply.error}`));
    });
    this.worker.on("error", (err: Error) => this.failPending(err));
    this.worker.on("exit", (code) => this.failPending(new Error(`load thread exited (code ${code})`)));
  }

  /** Runs one load; aborting `signal` stops the thread (in-flight requests are dropped). */
  run(spec: LoadSpec, signal: AbortSignal): Promise<LoadResult> {
    if (this.closing) return Promise.reject(new Error("load client is closed"));
    if (this.pending) return Promise.reject(new Error("a load is already running"));
    signal.throwIfAborted();
    const id = this.nextId++;
    return new Promise<LoadResult>((resolve, reject) => {
      const onAbort = () => {
        this.failPending(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
        void this.close();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      const done = () => signal.removeEventListener("abort", onAbort);
      this.pending = {
        id,
        resolve: (result) => {
          done();
          resolve(result);
        },
        reject: (err) => {
          done();
          reject(err);
        },
      };
      this.worker.postMessage({ id, spec } satisfies LoadRequest);
    });
  }

  /** Stops the thread. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.worker.terminate().then(() => {});
    return this.closing;
  }

  private failPending(err: Error): void {
    const pending = this.pending;
    this.pending = null;
    pending?.reject(err);
  }
}
