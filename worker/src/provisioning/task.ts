/**
 * The SkyPilot task of a launched node (https://docs.skypilot.co/en/latest/reference/yaml-spec.html):
 * one VM with one accelerator; `setup` installs Node.js, this repository's dependencies (the
 * backplane), vLLM and cloudflared; `run` starts `vllm serve` on 127.0.0.1:8000 with priority
 * scheduling, waits for its /health, opens a Cloudflare quick tunnel to the backplane's port (its
 * https://….trycloudflare.com URL becomes BACKPLANE_PUBLIC_URL: deployed Workers reach nodes only on
 * 443, and the tunnel needs no inbound port or certificate on the VM), then execs the backplane,
 * which registers the node with signed heartbeats.
 *
 * `workdir: .` makes `sky launch` sync the directory it runs in (the control host's checkout of this
 * repository; the provisioner runs sky there) to ~/sky_workdir, where setup and run execute, so the
 * node runs the backplane of the control host's version. The node's signing secret goes under
 * `secrets` (SkyPilot redacts those in its logs and dashboard), never under `envs`.
 */
import { stringify } from "yaml";
import type { LaunchRow } from "./launches.ts";

/** The vLLM engine's loopback port on the node. */
export const VLLM_PORT = 8000;
/** The backplane's loopback port on the node (the tunnel's origin). */
export const BACKPLANE_PORT = 8443;
/** How long `run` waits for vLLM's /health (weights download and load) before it gives up. */
export const VLLM_START_TIMEOUT_SECONDS = 1_500;

/** The SkyPilot task as a YAML document's fields. */
export interface SkyTask {
  name: string;
  workdir: string;
  resources: { cloud: string; region: string; accelerators: string; use_spot: boolean };
  envs: Record<string, string>;
  secrets: Record<string, string>;
  setup: string;
  run: string;
}

/** What a task needs besides the launch. */
export interface TaskContext {
  /** The gateway's public base URL: where heartbeats go. */
  gatewayUrl: string;
  /** The node's signing secret, derived from NODE_SIGNING_SECRET (deriveNodeSecret, version 1). */
  nodeSecret: string;
}

const SETUP = `set -euo pipefail
# Node.js for npm; the repository then brings its own Node 24 (the "node" devDependency).
if ! command -v npm >/dev/null 2>&1; then
  curl -fsSL https://deb.nodesource.com/setup_24.x | sudo -E bash -
  sudo apt-get install -y nodejs
fi
npm ci --no-audit --no-fund
# vLLM (pin it with: sky launch --env VLLM_SPEC=vllm==<version> …).
python3 -m pip install --upgrade pip
python3 -m pip install "$VLLM_SPEC"
# cloudflared for the quick tunnel that gives the backplane its public https URL.
mkdir -p "$HOME/.local/bin"
if ! [ -x "$HOME/.local/bin/cloudflared" ]; then
  curl -fsSL -o "$HOME/.local/bin/cloudflared" https://github.com/cloudflare/cloudflared/releases/latest/download/cloudflared-linux-amd64
  chmod +x "$HOME/.local/bin/cloudflared"
fi
`;

const RUN = `set -euo pipefail
export PATH="$HOME/.local/bin:$PATH"
# vLLM on loopback only: the backplane in front of it is the node's one way in.
vllm serve "$SWITCHYARD_MODEL" --served-model-name "$SWITCHYARD_MODEL" \\
  --host 127.0.0.1 --port "$VLLM_PORT" --scheduling-policy priority > "$HOME/vllm.log" 2>&1 &
VLLM_PID=$!
deadline=$((SECONDS + VLLM_START_TIMEOUT_SECONDS))
until curl -fsS "http://127.0.0.1:$VLLM_PORT/health" >/dev/null 2>&1; do
  if ! kill -0 "$VLLM_PID" 2>/dev/null; then echo "vLLM exited before it was healthy:"; tail -n 50 "$HOME/vllm.log"; exit 1; fi
  if [ "$SECONDS" -ge "$deadline" ]; then echo "vLLM was not healthy within $VLLM_START_TIMEOUT_SECONDS s:"; tail -n 50 "$HOME/vllm.log"; exit 1; fi
  sleep 5
done
# The public URL: a Cloudflare quick tunnel to the backplane (https on 443, no inbound port).
cloudflared tunnel --no-autoupdate --url "http://127.0.0.1:$BACKPLANE_PORT" > "$HOME/cloudflared.log" 2>&1 &
BACKPLANE_PUBLIC_URL=""
for _ in $(seq 1 60); do
  BACKPLANE_PUBLIC_URL=$(grep -Eo 'https://[a-z0-9-]+\\.trycloudflare\\.com' "$HOME/cloudflared.log" | head -n 1 || true)
  [ -n "$BACKPLANE_PUBLIC_URL" ] && break
  sleep 1
done
if [ -z "$BACKPLANE_PUBLIC_URL" ]; then echo "cloudflared gave no tunnel URL:"; tail -n 50 "$HOME/cloudflared.log"; exit 1; fi
export BACKPLANE_PUBLIC_URL
export BACKPLANE_ENGINES="kind=vllm,id=vllm-0,url=http://127.0.0.1:$VLLM_PORT,model=$SWITCHYARD_MODEL,priority=1"
exec npm run backplane -- start
`;

/** The backplane's spot watcher for the launch's cloud, when it is a spot launch on a cloud it knows. */
function spotWatch(launch: Pick<LaunchRow, "provider" | "spot">): Record<string, string> {
  if (!launch.spot) return {};
  if (launch.provider === "aws") return { BACKPLANE_SPOT_AWS: "true" };
  if (launch.provider === "gcp") return { BACKPLANE_SPOT_GCP: "true" };
  if (launch.provider === "azure") return { BACKPLANE_SPOT_AZURE: "true" };
  return {};
}

/** The task of a launch. */
export function skyTask(launch: Pick<LaunchRow, "nodeId" | "cluster" | "provider" | "region" | "model" | "gpu" | "spot">, ctx: TaskContext): SkyTask {
  return {
    name: launch.cluster,
    workdir: ".",
    resources: { cloud: launch.provider, region: launch.region, accelerators: `${launch.gpu}:1`, use_spot: launch.spot },
    envs: {
      SWITCHYARD_MODEL: launch.model,
      VLLM_SPEC: "vllm",
      VLLM_PORT: String(VLLM_PORT),
      VLLM_START_TIMEOUT_SECONDS: String(VLLM_START_TIMEOUT_SECONDS),
      BACKPLANE_NODE_ID: launch.nodeId,
      BACKPLANE_REGION: launch.region,
      BACKPLANE_GATEWAY_URL: ctx.gatewayUrl,
      BACKPLANE_HOST: "127.0.0.1",
      BACKPLANE_PORT: String(BACKPLANE_PORT),
      ...spotWatch(launch),
    },
    secrets: { BACKPLANE_SECRET: ctx.nodeSecret },
    setup: SETUP,
    run: RUN,
  };
}

/** The task as YAML (block scalars for the scripts, so they read as written). */
export function taskYaml(task: SkyTask): string {
  return stringify(task, { lineWidth: 0, blockQuote: "literal" });
}
