/** The admin CLI's commands: a table of `noun verb` → handler, and the help text. */
import { AdminUsageError, type Command, type CommandContext } from "./context.ts";
import { autoscalingCommands } from "./autoscaling.ts";
import { catalogueCommands } from "./catalogue.ts";
import { fleetCommands } from "./fleet.ts";
import { infraCommands } from "./infra.ts";
import { profileCommands } from "./profiles.ts";
import { provisioningCommands } from "./provisioning.ts";
import { councilCommands } from "./council.ts";
import { cacheCommands } from "./cache.ts";
import { memoryCommands } from "./memory.ts";
import { quotaCommands } from "./quotas.ts";
import { reconcileCommands } from "./reconcile.ts";
import { tenancyCommands } from "./tenancy.ts";

export { AdminUsageError };

/** Help text of the admin CLI. */
export const ADMIN_HELP = `Usage: npm run admin -- <command> [args] [--flag value …]

Tenancy, limits and budgets go through the gateway's admin API (--url, --token):
  tenant create  --name N [--plan P]                       (prints the id)
  tenant list | show ID | update ID [--name N] [--plan P] [--status active|suspended]
  tenant suspend ID | resume ID | delete ID                (delete removes its environments and keys)
  env create     --tenant T --name N [--region R]          (R pins the environment to a region; prints the id)
                 [--strategy S] [--region-overrides r1,r2]  (S: least-load|prefix-affinity|round-robin|latency|random;
                                                           overrides: regions its requests may ask for with the
                                                           x-switchyard-region header)
  env list [--tenant T] | show ID | update ID [--name N] [--region R|none] [--strategy S|none]
                 [--region-overrides r1,r2|none] [--audit off|metadata|full] [--cache on|off]
                 [--priority interactive|standard|batch|none] | delete ID
                                                           (--audit, also on create: conversation audit, docs/audit.md;
                                                           --cache, also on create: response and embeddings caches,
                                                           docs/caching.md; --priority, also on create: the class
                                                           of its keys' requests, docs/priority.md)
  key create     --env E --name N [--scopes chat,embeddings,admin] [--models m1,m2] [--expires 2027-01-01T00:00:00Z]
                 [--priority interactive|standard|batch]   (prints the key, the only time it is shown)
  key update ID --priority interactive|standard|batch|none  (none: the environment's class)
  key list [--env E | --tenant T] | show ID | revoke ID
  key rotate ID [--overlap SECONDS]                        (prints the new key; the old one works --overlap more
                                                           seconds, default 3600)
  limits set     SCOPE ID [--rpm N] [--tpm N] [--concurrency N]   (SCOPE: global|tenant|environment|key; "none"
                                                           resets a value to the default; global's ID is "global")
  limits show SCOPE ID | clear SCOPE ID
  budget add     SCOPE ID --kind tokens|spend|requests --period day|month|total --amount N  (spend in micro-USD)
  budget list [SCOPE ID] | update BUDGET_ID --amount N | delete BUDGET_ID
  credit grant   --tenant T --usd 5 [--kind free_tier|promotion|adjustment] [--expires 2027-01-01T00:00:00Z]
                 [--note TEXT]                             (paid before anything is billable; prints the id)
  credit list [--tenant T] [--active true] | void ID            (void: stops a grant paying for more usage)
  counters       SCOPE ID                                  (budget usage in the current period, and limits)
  audit          [--target ID] [--tenant T]                (newest first)
  usage          [--tenant T] [--start 2026-11-01] [--end 2026-12-01] [--bucket day|hour]
                 [--group-by tenant,model,environment,key]  (from the hourly rollups; the operator sees all tenants)
  reconciliation [--node N] [--alerts] [--since 2026-11-01] (engine-counted vs metered tokens per node and hour,
                                                           newest first; operator only)
  reconciliation --run [--node N]                          (flushes usage and reconciles now; prints what it wrote)
  model list | remove ID                                   (the catalogue; remove deactivates)
  model set ID   [--context N] [--kind chat|embedding|transcription] [--family F] [--input-price USD/M] [--output-price USD/M]
                 [--cached-price USD/M] [--audio-price USD/min|none]   (transcription models: per minute of audio)
                 [--cache-hit-factor F]                    (a gateway cache hit's share of the GPU price: 0 free, the
                                                           default, to 1; docs/caching.md)
                 [--active true|false] [--strategy S|none]   (node choice for the model;
                                                           an environment's strategy wins)
                 [--base-model B|none] [--adapter-source PATH|none]   (a LoRA adapter of the chat model B,
                                                           loaded on demand from PATH; created without --context
                                                           or prices, it takes B's)
                 [--alias A [--alias B …] | --alias A,B | --alias none]   (other names the model answers to on every
                                                           route, e.g. phi3 for phi3:latest: the whole list; none
                                                           clears it. Creating a model needs --context, unless an adapter)
  model export                                             (the whole catalogue as YAML, ordered by id: the document model apply takes)
  model apply FILE [--apply]                               (prints the plan of the YAML document: create, update, deactivate;
                                                           writes only with --apply; models left out are deactivated)
  council list TENANT | show TENANT [NAME]                 (a tenant's councils, the built-in default included; docs/council.md)
  council set TENANT NAME --file council.json              (creates or replaces a council: {specialists, synthesiser,
                                                           deadline_ms?, critical_tags?, leave_breadcrumbs?})
  council remove TENANT NAME
  council votes [--tenant T] [--council C]                 (stored votes, newest first)
  profile list | show NAME                                 (agent streaming profiles: the built-in voice, copilot, gui
                                                           and the operators'; docs/streaming-profiles.md)
  profile set NAME [--chunk-tokens N] [--interval 50ms] [--buffer-tokens N] [--timeout 60s]
                                                           (changes a profile, or adds one served at
                                                           /v1/agents/stream?type=NAME: a new one needs all four)
  profile remove NAME                                      (removes an operator's profile; a built-in goes back to
                                                           its defaults)
  cache show TENANT | purge TENANT                         (a tenant's entries and bytes in the response and embeddings
                                                           caches; purge deletes them all, docs/caching.md)
  memory trails [--tenant T]                               (memory trails, newest first, temperatures decayed to now;
                                                           docs/memory.md)
  memory cool                                              (operator: writes decayed temperatures back and removes
                                                           cold trails past retention now; prints what it did)

The fleet, through the admin API (operator only; docs/fleet.md):
  node list                                                (admin status, reported status, staleness, load, circuit)
  node show ID                                             (with its last 50 health changes)
  node drain ID | undrain ID                               (draining: no new requests, in-flight ones finish)
  node remove ID                                           (stop its backplane first: a running one registers again)
  node adapters ID                                         (the LoRA adapters its engines serve, per engine)
  node adapter-load ID NAME [--source PATH]                (loads a catalogue adapter there; the source defaults to
                                                           its adapter_source)
  node adapter-unload ID NAME
  node models ID                                           (what its engines serve, and Ollama engines keep on disk)
  node model ID MODEL [--engine E]                         (an Ollama model's details: family, size, context, capabilities)
  node model-delete ID MODEL [--engine E]                  (deletes it from the node's Ollama engine)
  node pull ID MODEL [--engine E]                          (pulls it onto the node's Ollama engine, with progress on
                                                           stderr; E picks one of several Ollama engines)
  node system ID                                           (CPU, memory, GPUs, disk and model storage of the host)
  node launch --provider aws --region us-east-1 --model M --gpu A10G [--count N] [--spot] [--dry-run]
                                                           (SkyPilot nodes, docs/provisioning.md: --dry-run prints the
                                                           task YAML; else creates the launches and, with sky on PATH,
                                                           runs sky launch for each; without it prints the YAML)
  node launches [--state S] [--model M] [--region R]       (launches, newest first, with their states)
  node terminate ID [--reason TEXT]                        (drains a launched node; sky down once nothing is in flight)
  provisioner run [--once] [--interval-ms 30000]           (the control host's loop: claims pending launches and runs
                                                           sky launch, runs sky down for terminating ones, reports)
  region list                                              (coordinates, price multiplier, healthy/total nodes)
  reservation add --tenant T --model M --tps N --nodes n1,n2   (reserved tokens per second, served first from the
                                                           nodes; prints the id)
  reservation list [--tenant T] [--model M] | delete ID
  autoscaling list                                         (each policy per model and region, and what it would do now)
  autoscaling show MODEL REGION                            (with its last decisions and their reasons)
  autoscaling set MODEL REGION [--min N] [--max N] [--target WAITING_PER_NODE] [--scale-up-after 2m]
                 [--idle 15m] [--provider aws] [--gpu A10G] [--spot true|false] [--mode dry_run|on]
                                                           (creates or changes a policy: a new one needs --max,
                                                           --target, --provider and --gpu; dry_run, the default,
                                                           records decisions without acting; docs/autoscaling.md)
  autoscaling delete MODEL REGION
  Lists take --limit N (default 50, max 200), --cursor C (printed when there is more) or --all.
  --json prints the API's JSON instead of tables.

Infrastructure, straight in Postgres (DATABASE_URL; UPSTASH_REDIS_REST_URL/TOKEN and REDIS_PREFIX to refresh caches):
  region upsert  --id R --name N --lat 50.1 --lon 8.7 [--multiplier 1.2]   (price multiplier of usage served there)
  model upsert   --id M --context N [--kind chat|embedding|transcription] [--family F] [--input-price USD/M] [--output-price USD/M]
                 [--audio-price USD/min]
  node add       --id N --region R --url https://gpu1.example.com --models m1,m2   (prints the node's secret;
                                                           NODE_SIGNING_SECRET)
  node secret    --id N                                    (prints the node's secret; for a new node, the one it
                                                           registers itself with through its first heartbeat)

Connection: --url (default $SWITCHYARD_URL or http://127.0.0.1:8787); --token (default $SWITCHYARD_ADMIN_TOKEN,
else the admin-token file of the local stack serving --url, whatever its SWITCHYARD_DATA_DIR; else .data/dev).
See docs/configuration.md.`;

const COMMANDS: Record<string, Command> = { ...autoscalingCommands, ...cacheCommands, ...memoryCommands, ...councilCommands, ...profileCommands, ...tenancyCommands, ...quotaCommands, ...catalogueCommands, ...infraCommands, ...reconcileCommands, ...fleetCommands, ...provisioningCommands };

/** Runs one admin command: `words` are the positionals (`noun verb args…`, or `noun args…` for counters and audit). */
export async function runAdminCommand(ctx: Omit<CommandContext, "args">, words: string[]): Promise<void> {
  const [noun = "", verb = ""] = words;
  const two = COMMANDS[`${noun} ${verb}`];
  if (two) return two({ ...ctx, args: words.slice(2) });
  const one = COMMANDS[noun];
  if (one) return one({ ...ctx, args: words.slice(1) });
  throw new AdminUsageError(`Unknown command "${words.slice(0, 2).join(" ")}".\n\n${ADMIN_HELP}`);
}
