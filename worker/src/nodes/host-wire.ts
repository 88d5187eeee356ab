/** The JSON of the host management routes (host-admin.ts), shared with the admin CLI (worker/cli/host.ts). */

/** One model of a node, as `GET /admin/nodes/:id/models` lists it. */
export interface NodeModelJson {
  object: "node_model";
  id: string;
  engine: string;
  engine_kind: string;
  /** The engine serves it now (its last health report). */
  served: boolean;
  /** On the Ollama engine's disk; null for other engines, or when Ollama did not answer. */
  on_disk: boolean | null;
  size_bytes: number | null;
  modified_at: string | null;
  digest: string | null;
  parameter_size: string | null;
  quantization_level: string | null;
}

/** A node's host, as `GET /admin/nodes/:id/system` answers. */
export interface NodeSystemJson {
  object: "node_system";
  node_id: string;
  cpu: { cores: number; model: string; load_average: number[] };
  memory: { total_bytes: number; available_bytes: number; used_bytes: number };
  gpus: {
    index: number;
    name: string;
    uuid: string;
    utilization_pct: number | null;
    memory_used_bytes: number | null;
    memory_total_bytes: number | null;
    temperature_c: number | null;
    power_draw_w: number | null;
  }[];
  /** Why `gpus` is empty or incomplete (no nvidia-smi…); null when nvidia-smi answered. */
  gpu_error: string | null;
  /** The file system the node measures (`/`). */
  disk: { path: string; total_bytes: number; free_bytes: number };
  /** Per Ollama engine, its models on disk and their total size; null when Ollama did not answer. */
  model_storage: { engine: string; models: number | null; bytes: number | null }[];
}
