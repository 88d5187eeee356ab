/** `reconciliation`: engine-counted against metered tokens per node and window, through the admin API. */
import type { ReconcileRunJson, ReconciliationJson } from "../src/admin/wire.ts";
import { table } from "./format.ts";
import { AdminUsageError, flag, list, output, type Command } from "./context.ts";

const HEADERS = ["NODE", "WINDOW START", "WINDOW END", "ENGINE P/G", "METERED P/C", "DRIFT P/G", "RATIO", "ALERT", "RESTART"];

/** One row of the table: prompt and generation side by side, the ratio as a percentage. */
function row(r: ReconciliationJson): unknown[] {
  return [
    r.node_id,
    r.window_start,
    r.window_end,
    `${r.engine_prompt_tokens}/${r.engine_generation_tokens}`,
    `${r.metered_prompt_tokens}/${r.metered_completion_tokens}`,
    `${r.drift_prompt_tokens}/${r.drift_generation_tokens}`,
    `${(r.drift_ratio * 100).toFixed(2)}%`,
    r.alert ? "ALERT" : "ok",
    r.engine_restarted ? "yes" : "-",
  ];
}

/** The reconciliation command. */
export const reconcileCommands: Record<string, Command> = {
  reconciliation: async (ctx) => {
    if (ctx.args.length > 0) throw new AdminUsageError(`Unexpected argument "${ctx.args[0]}": reconciliation takes only flags (--node, --alerts, --since, --run).`);
    const node = flag(ctx, "node");
    if (ctx.flags.run === true) {
      const body = await ctx.api().request<ReconcileRunJson>("POST", "/reconciliation/run", node === undefined ? {} : { node_id: node });
      output(ctx, body, () => {
        ctx.print(`Flushed ${body.flushed} usage events, then reconciled:`);
        ctx.print(
          body.nodes.length === 0
            ? "(no node has reported yet)"
            : table(
                ["NODE", "OUTCOME", "DETAIL"],
                body.nodes.map((n) => [n.node_id, n.outcome, n.reconciliation_id ?? n.sampled_at ?? (n.events === undefined ? "-" : `${n.events} events waiting`)]),
              ),
        );
        const shown = ctx.flags.alerts === true ? body.data.filter((r) => r.alert) : body.data;
        if (shown.length > 0) ctx.print(`\n${table(HEADERS, shown.map(row))}`);
      });
      return;
    }
    const params = new URLSearchParams();
    if (node !== undefined) params.set("node_id", node);
    if (ctx.flags.alerts === true) params.set("alert", "true");
    const since = flag(ctx, "since");
    if (since !== undefined) params.set("since", since);
    await list(ctx, params.size > 0 ? `/reconciliation?${params.toString()}` : "/reconciliation", HEADERS, row);
  },
};
