/** Entry of the load thread: runs one LoadSpec at a time for the main thread (load-client.ts). */
import { parentPort } from "node:worker_threads";
import { runLoad } from "./load.ts";
import type { LoadReply, LoadRequest } from "./load-client.ts";

const port = parentPort;
if (!port) throw new Error("bench/load-thread.ts runs as a worker thread of bench/run.ts");
port.on("message", (msg: LoadRequest) => {
  void runLoad(msg.spec).then(
    (result) => port.postMessage({ id: msg.id, result } satisfies LoadReply),
    (err: unknown) => port.postMessage({ id: msg.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies LoadReply),
  );
});
