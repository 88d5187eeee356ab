/** Entry of the probe thread: runs one ProbeSpec and posts the samples and checkpoints back (probe.ts). */
import { parentPort, workerData } from "node:worker_threads";
import { runProbe, type ProbeSpec } from "./probe.ts";

const port = parentPort;
if (!port) throw new Error("bench/lib/probe-thread.ts runs as a worker thread");
runProbe(workerData as ProbeSpec).then(
  (result) => port.postMessage({ result }),
  (err: unknown) => port.postMessage({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
);
