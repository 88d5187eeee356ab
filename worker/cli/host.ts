/** `node models|model|model-delete|pull|system`: a node's models and host through the admin API (operator only). */
import type { NodeModelJson, NodeSystemJson } from "../src/nodes/host-wire.ts";
import { ApiFailure } from "./client.ts";
import { fields, table } from "./format.ts";
import { arg, flag, output, type Command, type CommandContext } from "./context.ts";

const enc = encodeURIComponent;

function nodePath(ctx: CommandContext, suffix: string): string {
  return `/nodes/${enc(arg(ctx, 0, "the node id"))}${suffix}`;
}

function bytes(value: unknown): string {
  if (typeof value !== "number") return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${n.toFixed(1)} ${units[unit]}`;
}

const yesNo = (value: boolean | null) => (value === null ? "-" : value ? "yes" : "no");
const modelRow = (m: NodeModelJson) => [m.engine, m.id, yesNo(m.served), yesNo(m.on_disk), bytes(m.size_bytes), m.parameter_size, m.quantization_level];

/** `?engine=E` from --engine, for the model routes. */
function engineQuery(ctx: CommandContext): string {
  const engine = flag(ctx, "engine");
  return engine === undefined ? "" : `?engine=${enc(engine)}`;
}

/** One server-sent event of a pull: its `event:` name (null for plain data) and its parsed `data:`. */
interface PullEvent {
  event: string | null;
  data: Record<string, unknown>;
}

/** The events of an SSE body as they arrive (LF or CRLF framing; comments skipped). */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<PullEvent> {
  let buffer = "";
  for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
    buffer += chunk.replace(/\r\n?/g, "\n");
    for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event: string | null = null;
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length > 0) yield { event, data: JSON.parse(data.join("\n")) as Record<string, unknown> };
    }
  }
}

/** A progress line: the status, and for a layer download a bar, its percentage and sizes. */
function progressLine(data: Record<string, unknown>): string {
  const status = typeof data.status === "string" ? data.status : "";
  const { total, completed } = data;
  if (typeof total !== "number" || total <= 0) return status;
  const done = typeof completed === "number" ? Math.min(completed, total) : 0;
  const filled = Math.round((done / total) * 30);
  return `${status}  [${"#".repeat(filled)}${"-".repeat(30 - filled)}] ${Math.floor((done / total) * 100)}%  ${bytes(done)} / ${bytes(total)}`;
}

/**
 * `node pull`: the gateway's progress events drawn on stderr (one line rewritten in place on a
 * terminal, else a line per status change); resolves with the final `done` event, throws on `error`.
 */
async function pullWithProgress(ctx: CommandContext, nodeId: string, model: string): Promise<Record<string, unknown>> {
  const response = await ctx.api().open("POST", `/nodes/${enc(nodeId)}/models/pull`, { model, engine: flag(ctx, "engine") });
  if (!response.body) throw new ApiFailure("The gateway answered the pull without a body.", 0, null);
  let lastStatus: string | null = null;
  let drawn = false;
  try {
    for await (const { event, data } of sseEvents(response.body)) {
      if (event === "done") return data;
      if (event === "error") {
        const error = data.error as { message?: unknown; code?: unknown } | undefined;
        throw new ApiFailure(`Pull failed: ${typeof error?.message === "string" ? error.message : JSON.stringify(data)}`, 0, typeof error?.code === "string" ? error.code : null);
      }
      const status = typeof data.status === "string" ? data.status : "";
      if (ctx.rewrite) {
        ctx.rewrite(progressLine(data));
        drawn = true;
      } else if (status !== lastStatus) {
        ctx.warn(progressLine(data));
      }
      lastStatus = status;
    }
  } finally {
    if (drawn) ctx.rewrite?.("");
  }
  throw new ApiFailure(`Pull of ${model}: the gateway's stream ended without a final event.`, 0, null);
}

/** Host management commands (docs/fleet.md, "Models and host"). */
export const hostCommands: Record<string, Command> = {
  "node models": async (ctx) => {
    const body = await ctx.api().request<{ data: NodeModelJson[] }>("GET", nodePath(ctx, "/models"));
    output(ctx, body, () =>
      ctx.print(body.data.length === 0 ? "(none)" : table(["ENGINE", "MODEL", "SERVED", "ON DISK", "SIZE", "PARAMS", "QUANT"], body.data.map(modelRow))),
    );
  },
  "node model": async (ctx) => {
    const model = arg(ctx, 1, "the model name");
    const body = await ctx.api().request<Record<string, unknown>>("GET", nodePath(ctx, `/models/${enc(model)}${engineQuery(ctx)}`));
    output(ctx, body, () => {
      const details = (body.details ?? {}) as Record<string, unknown>;
      const info = (body.model_info ?? {}) as Record<string, unknown>;
      const context = Object.entries(info).find(([k]) => k.endsWith(".context_length"))?.[1];
      ctx.print(
        fields({
          model,
          node: body.node_id,
          family: details.family,
          parameter_size: details.parameter_size,
          quantization: details.quantization_level,
          format: details.format,
          context_length: context,
          capabilities: body.capabilities,
        }),
      );
    });
  },
  "node model-delete": async (ctx) => {
    const model = arg(ctx, 1, "the model name");
    const body = await ctx.api().request<{ engine: string | null }>("DELETE", nodePath(ctx, `/models/${enc(model)}${engineQuery(ctx)}`));
    output(ctx, body, () => ctx.print(`Deleted ${model}${body.engine ? ` from engine ${body.engine}` : ""} on node ${arg(ctx, 0, "the node id")}.`));
  },
  "node pull": async (ctx) => {
    const nodeId = arg(ctx, 0, "the node id");
    const model = arg(ctx, 1, "the model to pull (name:tag)");
    const done = await pullWithProgress(ctx, nodeId, model);
    output(ctx, done, () => ctx.print(`Pulled ${model} on node ${nodeId}.`));
  },
  "node system": async (ctx) => {
    const body = await ctx.api().request<NodeSystemJson>("GET", nodePath(ctx, "/system"));
    output(ctx, body, () => {
      const { cpu, memory, disk } = body;
      ctx.print(
        fields({
          node: body.node_id,
          cpu: `${cpu.cores} cores, ${cpu.model}, load ${cpu.load_average.map((l) => l.toFixed(2)).join(" ")}`,
          memory: `${bytes(memory.used_bytes)} used of ${bytes(memory.total_bytes)} (${bytes(memory.available_bytes)} available)`,
          disk: `${bytes(disk.free_bytes)} free of ${bytes(disk.total_bytes)} on ${disk.path}`,
          gpus: body.gpus.length === 0 ? `none${body.gpu_error ? ` (${body.gpu_error})` : ""}` : String(body.gpus.length),
        }),
      );
      if (body.gpus.length > 0) {
        ctx.print(
          `\n${table(
            ["GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER"],
            body.gpus.map((g) => [g.index, g.name, g.utilization_pct === null ? "-" : `${g.utilization_pct}%`, `${bytes(g.memory_used_bytes)} / ${bytes(g.memory_total_bytes)}`, g.temperature_c === null ? "-" : `${g.temperature_c}C`, g.power_draw_w === null ? "-" : `${g.power_draw_w}W`]),
          )}`,
        );
      }
      if (body.model_storage.length > 0) {
        ctx.print(`\n${table(["ENGINE", "MODELS", "SIZE"], body.model_storage.map((s) => [s.engine, s.models, bytes(s.bytes)]))}`);
      }
    });
  },
};
