/**
 * `backplane fedattn start|join|status`: the participant from the command line (main.ts parses argv
 * and the daemon's settings, this file turns them into ParticipantOptions and prints the outcome).
 */
import type { BackplaneConfig } from "../config.ts";
import { SETTINGS } from "../config.ts";
import type { KvEngine } from "./engine.ts";
import { FedattnError } from "./errors.ts";
import { parseShape } from "./kv.ts";
import type { ActiveSession, ParticipantOptions, ParticipantSummary } from "./participant.ts";

/** `--help` of `backplane fedattn`. */
export const FEDATTN_HELP = `Usage: backplane fedattn <start|join|status> [options]

Takes part in a federated-attention session on the gateway (docs/fedattn.md, "Participant"), as this
node: every call is signed with the node's secret like its heartbeats. Reads the daemon's settings
(flags or BACKPLANE_* variables: --node-id, --region, --secret, --gateway-url, --engine; see
'backplane start --help'). K/V come from the engine: only the simulated engine (kind=sim) exposes
them today.

Commands:
  start    start a session, run the syncs, then leave it (or --end it)
  join     join --session <id>, run the syncs, then leave it (or --end it)
  status   list the active sessions this node takes part in

Options of start and join:
  --session <id>              the session to join (join only)
  --prompt <text>             this node's prompt; only its K/V leave the node (required)
  --blocks <n>                transformer blocks of the model (default 32)
  --sync-interval <n>         blocks per sync of a session you start, 1..1024 (default 8); syncs
                              cover blocks 0..H-1, H..2H-1, ...; a joined session's own interval is used
  --syncs <n>                 syncs to run (default: every range in --blocks)
  --wait-for <n>              before the first sync, wait until the session has n participants
  --wait-timeout-ms <ms>      how long to wait for them (default 120000)
  --aggregate-wait-ms <ms>    how long the gateway waits for every participant per sync, 0..60000
                              (default 30000); after it, the aggregate is of those who contributed
  --model <name>              model whose K/V to read (default the engine's first generate model)
  --shape <dims>              dims of one block's K and V, e.g. 16x64 (default the engine's)
  --weight <w>                this node's weight in the average (default 1)
  --privacy-mode <true|false> privacy_mode of a session you start (default true)
  --kv-engine <id>            the engine to use (default the first kind=sim engine)
  --request-timeout-ms <ms>   deadline of each call to the gateway and the engine (default 30000)
  --end                       end the session for everyone when done, instead of leaving it
  --json                      print the summary as JSON (progress still goes to stderr)

Options of status:
  --session <id>              only this session
  --request-timeout-ms <ms>   deadline of the call to the gateway (default 30000)
  --json                      print the sessions as JSON`;

/** The options `backplane fedattn` adds to the daemon's settings (for node:util parseArgs). */
export const FEDATTN_OPTIONS = {
  session: { type: "string" },
  prompt: { type: "string" },
  blocks: { type: "string" },
  "sync-interval": { type: "string" },
  syncs: { type: "string" },
  "wait-for": { type: "string" },
  "wait-timeout-ms": { type: "string" },
  "aggregate-wait-ms": { type: "string" },
  model: { type: "string" },
  shape: { type: "string" },
  weight: { type: "string" },
  "privacy-mode": { type: "string" },
  "kv-engine": { type: "string" },
  "request-timeout-ms": { type: "string" },
  end: { type: "boolean" },
  json: { type: "boolean" },
} as const;

/** Parsed flags, as node:util parseArgs returns them. */
export type Flags = Record<string, string | string[] | boolean | undefined>;

/** The subcommands. */
export type FedattnCommand = "start" | "join" | "status";

function usage(message: string): FedattnError {
  return new FedattnError("invalid_options", `${message} (see backplane fedattn --help)`);
}

/** The subcommand named first in argv; throws a usage error for anything else. */
export function fedattnCommand(word: string | undefined): FedattnCommand {
  if (word === "start" || word === "join" || word === "status") return word;
  throw usage(word === undefined ? "Name a command: start, join or status" : `Unknown command "${word}": use start, join or status`);
}

function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" ? v : undefined;
}

function int(flags: Flags, name: string): number | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim())) throw usage(`--${name}: expected a whole number, got "${v}"`);
  return Number(v);
}

/** The deadline of each call: --request-timeout-ms, default 30000. */
export function requestTimeoutOf(flags: Flags): number {
  return int(flags, "request-timeout-ms") ?? 30_000;
}

/** The engine to read K/V from: --kv-engine, else the first kind=sim engine, else the first (refused later, with why). */
export function pickEngine(config: BackplaneConfig, id: string | undefined): KvEngine {
  const engine = id === undefined ? (config.engines.find((e) => e.kind === "sim") ?? config.engines[0]) : config.engines.find((e) => e.id === id);
  if (engine === undefined) throw usage(`--kv-engine: no engine has the id "${id ?? ""}" (engines: ${config.engines.map((e) => e.id).join(", ")})`);
  return { kind: engine.kind, url: engine.url, id: engine.id, apiKey: engine.apiKey };
}

/** The gateway URL from the config, or a usage error saying how to set it. */
export function gatewayUrlOf(config: BackplaneConfig): string {
  if (config.gatewayUrl === null) throw usage(`Federated attention needs the gateway: set ${SETTINGS.gatewayUrl.flag} / ${SETTINGS.gatewayUrl.env}`);
  return config.gatewayUrl;
}

/** ParticipantOptions of `start` or `join` from the flags and the daemon's config. */
export function participantOptions(command: "start" | "join", flags: Flags, config: BackplaneConfig): ParticipantOptions {
  const session = str(flags, "session");
  if (command === "join" && session === undefined) throw usage("join needs --session <id> (the id 'fedattn start' printed)");
  if (command === "start" && session !== undefined) throw usage("start makes a new session; to take part in an existing one use 'fedattn join --session <id>'");
  const prompt = str(flags, "prompt");
  if (prompt === undefined || prompt === "") throw usage("--prompt <text> is required: it is what this node's K/V are computed from");
  const shapeText = str(flags, "shape");
  const shape = shapeText === undefined ? undefined : parseShape(shapeText);
  if (shape === null) throw usage(`--shape: expected dims like 16x64, got "${shapeText ?? ""}"`);
  const weightText = str(flags, "weight");
  const weight = weightText === undefined ? undefined : Number(weightText);
  if (weight !== undefined && (weightText?.trim() === "" || !Number.isFinite(weight) || weight < 0)) throw usage(`--weight: expected a number >= 0, got "${weightText ?? ""}"`);
  const privacy = str(flags, "privacy-mode");
  if (privacy !== undefined && privacy !== "true" && privacy !== "false") throw usage(`--privacy-mode: expected true or false, got "${privacy}"`);
  return {
    gatewayUrl: gatewayUrlOf(config),
    nodeId: config.nodeId,
    secret: config.secret,
    engine: pickEngine(config, str(flags, "kv-engine")),
    prompt,
    end: flags.end === true,
    sessionId: session,
    syncInterval: int(flags, "sync-interval"),
    privacyMode: privacy === undefined ? undefined : privacy === "true",
    waitFor: int(flags, "wait-for"),
    waitTimeoutMs: int(flags, "wait-timeout-ms"),
    blocks: int(flags, "blocks"),
    syncs: int(flags, "syncs"),
    model: str(flags, "model"),
    shape,
    weight,
    aggregateWaitMs: int(flags, "aggregate-wait-ms"),
    requestTimeoutMs: int(flags, "request-timeout-ms"),
  };
}

/** One progress line on stderr for a participant's log event, or null for none. */
export function progressLine(event: string, fields: Record<string, unknown>): string | null {
  const id = String(fields.sessionId);
  if (event === "fedattn_session_started") return `Started session ${id} (sync interval ${String(fields.syncInterval)}). Others join with: npm run backplane -- fedattn join --session ${id} --prompt …`;
  if (event === "fedattn_session_joined") return `Joined session ${id} (sync interval ${String(fields.syncInterval)}; participants ${(fields.participants as string[]).join(", ")})`;
  if (event === "fedattn_sync") return `Synced blocks ${String(fields.blockStart)}-${String(fields.blockEnd)}`;
  if (event === "fedattn_left_after_error") return `Left session ${id} after the error below`;
  if (event === "fedattn_leave_failed") return `Could not leave session ${id} after the error below: ${String(fields.error)}`;
  return null;
}

const round = (n: number) => (Math.abs(n) >= 1000 ? n.toFixed(1) : n.toPrecision(6));

/** The human summary of a run. */
export function formatSummary(s: ParticipantSummary): string {
  const lines = [`Session ${s.sessionId}: node ${s.nodeId} (${s.role}), sync interval ${s.syncInterval}, ${s.syncs.length} sync${s.syncs.length === 1 ? "" : "s"}`];
  for (const r of s.syncs) {
    const missing = r.missing.length > 0 ? `, missing ${r.missing.join(",")}` : "";
    const latency = r.syncLatencyMs === null ? "?" : `${r.syncLatencyMs} ms`;
    lines.push(
      `  blocks ${r.blockStart}-${r.blockEnd}: ${r.participants.length} participants (${r.participants.join(",")}${missing}), gateway ${latency}, sent ${r.contributedBytes} B, got ${r.bytes} B, applied K sum ${round(r.kChecksum)} V sum ${round(r.vChecksum)}`,
    );
  }
  lines.push(
    s.finish.status === "ended"
      ? `Ended the session (participants were ${s.finish.participants.join(", ")}).`
      : `Left the session (${s.finish.sessionStatus === "ended" ? "it ended: no participants left" : `still active with ${s.finish.participants.join(", ")}`}).`,
  );
  return lines.join("\n");
}

/** The human list of active sessions. */
export function formatSessions(sessions: ActiveSession[]): string {
  if (sessions.length === 0) return "No active federated-attention session includes this node.";
  return sessions
    .map((s) => {
      const latency = s.average_sync_latency_ms === null ? "none yet" : `${s.average_sync_latency_ms} ms`;
      return `${s.session_id}  initiator ${s.initiator}, participants ${s.participants.join(", ")}, sync interval ${s.sync_interval}, privacy ${s.privacy_mode ? "on" : "off"}, ${s.total_syncs} syncs (average ${latency}), ${s.pending_contributions} contributions pending`;
    })
    .join("\n");
}
