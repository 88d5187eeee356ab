/**
 * The benchmark's workers under plain workerd: the generic part (startWorkerd, the bundler) lives in
 * worker/selfhost/, shared with `npm run serve`; this file adds the bare Hono forwarder the worker's
 * CPU is compared with.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleScript, readWorkerConfig, ROOT, type WorkerBundle } from "../../worker/selfhost/bundle.ts";
import { startWorkerd, type Workerd } from "../../worker/selfhost/workerd.ts";

export { bundleScript, bundleWorker, readWorkerConfig, ROOT, type DurableObjectBinding, type ModuleType, type WorkerBundle, type WorkerConfig, type WorkerModule } from "../../worker/selfhost/bundle.ts";
export { startWorkerd, workerdBinary, type Workerd, type WorkerdOptions } from "../../worker/selfhost/workerd.ts";

/** The bare Hono forwarder (bench/workers/hono-forwarder.ts). */
export const HONO_FORWARDER_ENTRY = join(ROOT, "bench/workers/hono-forwarder.ts");

/**
 * Starts the bare Hono forwarder on workerd, forwarding to `upstream`, with the gateway's
 * compatibility settings unless given. Pass `bundle` (from `bundleHonoForwarder`) to reuse one.
 */
export async function startHonoForwarder(opts: {
  upstream: string;
  host?: string;
  port?: number;
  compatibilityDate?: string;
  compatibilityFlags?: string[];
  bundle?: WorkerBundle;
}): Promise<Workerd> {
  let compatibilityDate = opts.compatibilityDate;
  let compatibilityFlags = opts.compatibilityFlags;
  if (compatibilityDate === undefined) {
    const project = await readWorkerConfig();
    compatibilityDate = project.compatibilityDate;
    compatibilityFlags ??= project.compatibilityFlags;
  }
  // workerd reads the embedded modules when it loads the config, so a bundle made here can go as
  // soon as it listens.
  const bundleDir = opts.bundle ? null : await mkdtemp(join(tmpdir(), "sy-forwarder-"));
  try {
    const bundle = opts.bundle ?? (await bundleHonoForwarder(join(bundleDir ?? "", "bundle"), { compatibilityDate, compatibilityFlags }));
    return await startWorkerd({
      name: "hono-forwarder",
      modules: bundle.modules,
      bindings: { UPSTREAM: opts.upstream },
      compatibilityDate,
      compatibilityFlags,
      host: opts.host,
      port: opts.port,
    });
  } finally {
    if (bundleDir !== null) await rm(bundleDir, { recursive: true, force: true });
  }
}

/** Bundles the bare Hono forwarder into `outDir` (as `wrangler deploy` would). */
export function bundleHonoForwarder(outDir: string, opts: { compatibilityDate: string; compatibilityFlags?: string[] }): Promise<WorkerBundle> {
  return bundleScript(HONO_FORWARDER_ENTRY, outDir, { name: "hono-forwarder", ...opts });
}
