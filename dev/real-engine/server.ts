/**
 * Starts `llama-server` on loopback the way an operator would put it behind a backplane: metrics and
 * slots on (the backplane's `llamacpp` engine kind reads load and token counters from them), Jinja
 * chat templates, a served name (`--alias`), and either a chat model or an embedding one.
 */
import { join } from "node:path";
import { freePort, waitForHttp } from "../ports.ts";
import { startChild, type Child } from "../processes.ts";

/** A running llama-server. */
export interface LlamaServer {
  url: string;
  alias: string;
  child: Child;
}

/** Template with tool calling (Hermes-style `<tool_call>`), from llama.cpp's own `models/templates`. */
export const TOOL_TEMPLATE = join("models", "templates", "Qwen-Qwen2.5-7B-Instruct.jinja");

/** Starts one llama-server and waits until it has loaded its model (`/health` 200). */
export async function startLlamaServer(opts: {
  binary: string;
  src: string;
  model: string;
  alias: string;
  /** Serve embeddings (`--embeddings`, mean pooling) instead of generation. */
  embeddings?: boolean;
  /** Requests served at once (`--parallel`), each with context / parallel tokens. */
  parallel?: number;
  context?: number;
  echo?: boolean;
  cwd: string;
}): Promise<LlamaServer> {
  const port = await freePort();
  const args = [
    "--model", opts.model,
    "--alias", opts.alias,
    "--host", "127.0.0.1",
    "--port", String(port),
    "--ctx-size", String(opts.context ?? 4096),
    "--parallel", String(opts.parallel ?? 2),
    "--threads", "2",
    "--metrics",
    "--slots",
    "--jinja",
    "--chat-template-file", join(opts.src, TOOL_TEMPLATE),
    ...(opts.embeddings ? ["--embeddings", "--pooling", "mean"] : []),
  ];
  const child = startChild(opts.alias, args, { cwd: opts.cwd, echo: opts.echo ?? false, command: opts.binary });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/health`, 60_000, () => child.alive());
  } catch (err) {
    await child.stop();
    throw new Error(`${String(err)}\n${child.recentOutput()}`, { cause: err });
  }
  return { url, alias: opts.alias, child };
}
