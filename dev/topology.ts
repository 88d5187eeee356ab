/**
 * Topology files for the local stack (`npm start -- --topology <file>`): regions with coordinates and
 * several backplanes, each with its own simulated engine. The format is documented in docs/topology.md.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { DEMO_MODELS } from "./seed.ts";

/** Thrown for a topology file that cannot be read or is invalid; the message names the file and the field. */
export class TopologyError extends Error {
  override name = "TopologyError";
}

// Same rule as the backplane's --node-id and --region (backplane/src/config.ts).
const ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const id = z.string().regex(ID, "must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit");
const MODEL_IDS = DEMO_MODELS.map((m) => m.id);

/** Backplane settings the stack sets for every node itself; a topology may not override them. */
const STACK_OWNED_ENV = [
  "BACKPLANE_NODE_ID",
  "BACKPLANE_REGION",
  "BACKPLANE_SECRET",
  "BACKPLANE_HOST",
  "BACKPLANE_PORT",
  "BACKPLANE_PUBLIC_URL",
  "BACKPLANE_GATEWAY_URL",
  "BACKPLANE_ENGINES",
];

const regionSchema = z.strictObject({
  id,
  name: z.string().min(1, "must not be empty"),
  latitude: z.number().min(-90).max(90),
  longitude: z.number().min(-180).max(180),
  priceMultiplier: z.number().positive().default(1),
});

// Each maps to a flag of the simulated engine (backplane/src/sim/args.ts).
const simSchema = z.strictObject({
  ttftMs: z.number().min(0).max(3_600_000).optional(),
  prefillMsPerToken: z.number().min(0).max(60_000).optional(),
  interTokenMs: z.number().min(0).max(3_600_000).optional(),
  outputTokens: z.number().int().min(1).optional(),
  maxConcurrency: z.number().int().min(1).optional(),
  seed: z.number().int().optional(),
  embeddingDimensions: z.number().int().min(1).max(65_536).optional(),
});

const SIM_FLAGS: Record<keyof z.infer<typeof simSchema>, string> = {
  ttftMs: "--ttft-ms",
  prefillMsPerToken: "--prefill-ms-per-token",
  interTokenMs: "--inter-token-ms",
  outputTokens: "--output-tokens",
  maxConcurrency: "--max-concurrency",
  seed: "--seed",
  embeddingDimensions: "--embedding-dimensions",
};

const backplaneEnvSchema = z
  .record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String))
  .superRefine((env, ctx) => {
    for (const key of Object.keys(env)) {
      // Checked here rather than with a key schema, whose failure zod reports only as "Invalid key in record".
      if (!/^BACKPLANE_[A-Z0-9_]+$/.test(key)) ctx.addIssue({ code: "custom", path: [key], message: "is not a backplane setting (BACKPLANE_*, see docs/configuration.md)" });
      else if (STACK_OWNED_ENV.includes(key)) ctx.addIssue({ code: "custom", path: [key], message: "is set by the local stack for every node and cannot be overridden" });
    }
  });

const nodeSchema = z.strictObject({
  id,
  region: id,
  models: z
    .array(z.enum(MODEL_IDS as [string, ...string[]], { error: `must be a model of the local catalogue (${MODEL_IDS.join(", ")})` }))
    .min(1, "must list at least one model")
    .refine((models) => new Set(models).size === models.length, "must not list a model twice")
    .optional(),
  sim: simSchema.optional(),
  backplaneEnv: backplaneEnvSchema.optional(),
});

const topologySchema = z
  .strictObject({
    description: z.string().optional(),
    regions: z.array(regionSchema).min(1, "must list at least one region"),
    nodes: z.array(nodeSchema).min(1, "must list at least one node"),
  })
  .superRefine((topology, ctx) => {
    const regionIds = topology.regions.map((r) => r.id);
    const seen = new Set<string>();
    topology.regions.forEach((r, i) => {
      if (seen.has(r.id)) ctx.addIssue({ code: "custom", path: ["regions", i, "id"], message: `region "${r.id}" is defined twice` });
      seen.add(r.id);
    });
    const nodeIds = new Set<string>();
    topology.nodes.forEach((n, i) => {
      if (nodeIds.has(n.id)) ctx.addIssue({ code: "custom", path: ["nodes", i, "id"], message: `node "${n.id}" is defined twice` });
      nodeIds.add(n.id);
      if (!regionIds.includes(n.region)) {
        ctx.addIssue({ code: "custom", path: ["nodes", i, "region"], message: `unknown region "${n.region}" (the file defines: ${regionIds.join(", ")})` });
      }
    });
  });

/** A validated topology file. */
export type Topology = z.output<typeof topologySchema>;
/** One region of a topology (priceMultiplier defaults to 1). */
export type TopologyRegion = Topology["regions"][number];
/** One node of a topology: a backplane with its own simulated engine. */
export type TopologyNode = Topology["nodes"][number];

/** `nodes.2.sim.ttftMs` → `nodes[2].sim.ttftMs`. */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) out += typeof part === "number" ? `[${part}]` : `${out === "" ? "" : "."}${String(part)}`;
  return out === "" ? "(top level)" : out;
}

/** Validates a parsed topology; throws a TopologyError listing every bad field (`nodes[2].region: unknown region …`). */
export function parseTopology(value: unknown, source = "topology"): Topology {
  const result = topologySchema.safeParse(value);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
    // An unknown key is named in full, so a typo such as "lattitude" points at itself.
    if (keys.length > 0) return `  ${keys.map((k) => fieldPath([...issue.path, k])).join(", ")}: unknown field`;
    return `  ${fieldPath(issue.path)}: ${issue.message}`;
  });
  throw new TopologyError(`Invalid topology ${source}:\n${lines.join("\n")}\n(format: docs/topology.md)`);
}

/** Reads and validates a topology file (JSON). */
export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = err instanceof Error && "code" in err ? String(err.code) : "";
    throw new TopologyError(code === "ENOENT" ? `Topology file ${file} does not exist.` : `Cannot read topology file ${file}: ${String(err)}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new TopologyError(`Topology file ${file} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return parseTopology(value, file);
}

/** The simulated engine's `--model` spec of a catalogue model: `id:kind:context`. */
export function simModelSpec(model: (typeof DEMO_MODELS)[number]): string {
  const kind = model.kind === "embedding" ? "embed" : model.kind === "transcription" ? "transcribe" : "generate";
  return `${model.id}:${kind}:${model.contextLength}`;
}

/** The simulated engine's flags for a node: its models (when the node lists them) and its `sim` settings. */
export function simArgsFor(node: TopologyNode): string[] {
  const args: string[] = [];
  for (const modelId of node.models ?? []) {
    const model = DEMO_MODELS.find((m) => m.id === modelId);
    if (model) args.push("--model", simModelSpec(model));
  }
  for (const [key, value] of Object.entries(node.sim ?? {})) {
    if (value !== undefined) args.push(SIM_FLAGS[key as keyof typeof SIM_FLAGS], String(value));
  }
  return args;
}
