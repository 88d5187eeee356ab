import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { freePort } from "../../dev/ports.ts";
import { parseConfig } from "../../backplane/src/config.ts";
import { fedattnCommand, FEDATTN_HELP, formatSessions, formatSummary, participantOptions, type Flags } from "../../backplane/src/fedattn/cli.ts";
import { FedattnError } from "../../backplane/src/fedattn/errors.ts";
import { blockRanges, runParticipant } from "../../backplane/src/fedattn/participant.ts";
import { TEST_SECRET } from "../support/backplane-harness.ts";
import { useSimEngine } from "../support/sim-harness.ts";

// `backplane fedattn start|join|status`: arguments, help, summaries, and refusals before any sync.

const run = promisify(execFile);

async function backplane(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["backplane/src/main.ts", ...args], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const settings = ["--node-id", "gpu-1", "--region", "eu-1", "--secret", TEST_SECRET];

const config = parseConfig({
  nodeId: "gpu-1",
  region: "eu-1",
  secret: TEST_SECRET,
  gatewayUrl: "http://127.0.0.1:8787",
  engines: ["kind=vllm,url=http://127.0.0.1:8000", "kind=sim,url=http://127.0.0.1:8001,id=sim-a", "kind=sim,url=http://127.0.0.1:8002,id=sim-b"],
});

function thrown(fn: () => unknown): FedattnError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FedattnError) return err;
    throw err;
  }
  throw new Error("expected a FedattnError");
}

describe("backplane fedattn arguments", () => {
  it("maps start's flags onto the participant's options, with the node, secret and gateway from the daemon's settings", () => {
    const flags: Flags = {
      prompt: "my private prompt",
      blocks: "24",
      "sync-interval": "6",
      syncs: "2",
      "wait-for": "3",
      "wait-timeout-ms": "5000",
      "aggregate-wait-ms": "1500",
      model: "sim-llama-8b",
      shape: "4x8",
      weight: "0.5",
      "privacy-mode": "false",
      "request-timeout-ms": "9000",
      end: true,
    };
    expect(participantOptions("start", flags, config)).toEqual({
      gatewayUrl: "http://127.0.0.1:8787",
      nodeId: "gpu-1",
      secret: TEST_SECRET,
      // The first kind=sim engine, not the first engine.
      engine: { kind: "sim", url: "http://127.0.0.1:8001", id: "sim-a", apiKey: null },
      prompt: "my private prompt",
      end: true,
      sessionId: undefined,
      syncInterval: 6,
      privacyMode: false,
      waitFor: 3,
      waitTimeoutMs: 5000,
      blocks: 24,
      syncs: 2,
      model: "sim-llama-8b",
      shape: [4, 8],
      weight: 0.5,
      aggregateWaitMs: 1500,
      requestTimeoutMs: 9000,
    });
  });

  it("takes join's session and a chosen engine, leaving the rest to the defaults", () => {
    const options = participantOptions("join", { session: "fa_abc", prompt: "p", "kv-engine": "sim-b" }, config);
    expect(options).toMatchObject({ sessionId: "fa_abc", prompt: "p", end: false, engine: { id: "sim-b", url: "http://127.0.0.1:8002" } });
    expect(options.syncInterval).toBeUndefined();
    expect(options.blocks).toBeUndefined();
  });

  it("refuses missing or malformed options with a message saying what to give", () => {
    const cases: [() => unknown, RegExp][] = [
      [() => participantOptions("join", { prompt: "p" }, config), /join needs --session/],
      [() => participantOptions("start", { session: "fa_x", prompt: "p" }, config), /fedattn join --session/],
      [() => participantOptions("start", {}, config), /--prompt <text> is required/],
      [() => participantOptions("start", { prompt: "p", shape: "4by8" }, config), /--shape: expected dims like 16x64/],
      [() => participantOptions("start", { prompt: "p", weight: "-1" }, config), /--weight: expected a number >= 0/],
      [() => participantOptions("start", { prompt: "p", blocks: "ten" }, config), /--blocks: expected a whole number/],
      [() => participantOptions("start", { prompt: "p", "privacy-mode": "maybe" }, config), /--privacy-mode: expected true or false/],
      [() => participantOptions("start", { prompt: "p", "kv-engine": "gpu-9" }, config), /no engine has the id "gpu-9" \(engines: vllm-0, sim-a, sim-b\)/],
      [() => participantOptions("start", { prompt: "p" }, { ...config, gatewayUrl: null }), /--gateway-url \/ BACKPLANE_GATEWAY_URL/],
      [() => fedattnCommand("frob"), /Unknown command "frob": use start, join or status/],
      [() => fedattnCommand(undefined), /Name a command/],
    ];
    for (const [fn, message] of cases) {
      const err = thrown(fn);
      expect(err.code).toBe("invalid_options");
      expect(err.message).toMatch(message);
    }
  });

  it("syncs block ranges [0, H-1], [H, 2H-1], …, the last one shorter when H does not divide the blocks", () => {
    expect(blockRanges(32, 8)).toEqual([[0, 7], [8, 15], [16, 23], [24, 31]]);
    expect(blockRanges(10, 4)).toEqual([[0, 3], [4, 7], [8, 9]]);
    expect(blockRanges(3, 8)).toEqual([[0, 2]]);
  });
});

describe("runParticipant before the first sync", () => {
  const start = useSimEngine();

  it("refuses an engine other than the simulator, saying only the simulated engine exposes K/V, without calling the gateway", async () => {
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const err = await runParticipant({ gatewayUrl: "http://127.0.0.1:9", nodeId: "gpu-1", secret: TEST_SECRET, engine: { kind: "vllm", url: "http://127.0.0.1:8000" }, prompt: "p", fetch: counting }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FedattnError);
    expect((err as FedattnError).code).toBe("engine_unsupported");
    expect((err as FedattnError).message).toMatch(/only the simulated engine \(kind=sim\) exposes K\/V today/);
    expect(calls).toBe(0);
  });

  it("says the gateway did not answer, naming the setting, when nothing listens there", async () => {
    const sim = await start();
    const port = await freePort();
    const err = await runParticipant({ gatewayUrl: `http://127.0.0.1:${port}`, nodeId: "gpu-1", secret: TEST_SECRET, engine: { kind: "sim", url: sim.url }, prompt: "p", requestTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FedattnError);
    expect((err as FedattnError).code).toBe("gateway_unreachable");
    expect((err as FedattnError).message).toMatch(new RegExp(`POST http://127.0.0.1:${port}/v1/fedattn/sessions: the gateway did not answer .*--gateway-url`));
  });

  it("refuses out-of-range options before calling anything", async () => {
    const engine = { kind: "sim" as const, url: "http://127.0.0.1:1" };
    const base = { gatewayUrl: "http://127.0.0.1:9", nodeId: "gpu-1", secret: TEST_SECRET, engine, prompt: "p" };
    for (const [extra, message] of [
      [{ syncInterval: 0 }, /syncInterval must be an integer in 1..1024/],
      [{ aggregateWaitMs: 60_001 }, /aggregateWaitMs must be an integer in 0..60000/],
      [{ weight: Number.NaN }, /weight must be a finite number/],
      [{ prompt: "" }, /prompt must not be empty/],
      [{ shape: [1, 2, 3, 4] }, /shape must have 1 to 3 dims/],
    ] as const) {
      const err = await runParticipant({ ...base, ...extra }).catch((e: unknown) => e);
      expect((err as FedattnError).code).toBe("invalid_options");
      expect((err as FedattnError).message).toMatch(message);
    }
  });
});

describe("backplane fedattn command", () => {
  it("prints its help, and is listed in the backplane's", async () => {
    for (const args of [["fedattn", "--help"], ["fedattn"], ["fedattn", "start", "--help"]]) {
      const res = await backplane(args);
      expect(res.code).toBe(0);
      expect(res.stdout.trim()).toBe(FEDATTN_HELP);
    }
    expect(FEDATTN_HELP).toMatch(/--wait-for <n>/);
    expect(FEDATTN_HELP).toMatch(/only the simulated engine \(kind=sim\)/);
    const top = await backplane(["--help"]);
    expect(top.stdout).toMatch(/fedattn\s+Take part in a federated-attention session/);
  });

  it("exits 2 naming the problem for bad arguments, and 1 with the reason for an engine that cannot take part", async () => {
    const noSession = await backplane(["fedattn", "join", ...settings, "--gateway-url", "http://127.0.0.1:9", "--engine", "kind=sim,url=http://127.0.0.1:9", "--prompt", "p"]);
    expect(noSession.code).toBe(2);
    expect(noSession.stderr).toMatch(/join needs --session/);
    const unknown = await backplane(["fedattn", "frob"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown command "frob"/);
    const badFlag = await backplane(["fedattn", "start", ...settings, "--engine", "kind=sim,url=http://127.0.0.1:9", "--bogus"]);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/--bogus/);
    const vllm = await backplane(["fedattn", "start", ...settings, "--gateway-url", "http://127.0.0.1:9", "--engine", "kind=vllm,url=http://127.0.0.1:9", "--prompt", "p"]);
    expect(vllm.code).toBe(1);
    expect(vllm.stderr.trim()).toMatch(/^Engine vllm-0 \(kind=vllm\) cannot take part in federated attention: only the simulated engine \(kind=sim\) exposes K\/V today/);
  });
});

describe("fedattn summaries", () => {
  it("prints one line per sync and how the run finished", () => {
    const text = formatSummary({
      sessionId: "fa_1",
      nodeId: "gpu-1",
      role: "initiator",
      syncInterval: 8,
      syncs: [
        { sync: 1, blockStart: 0, blockEnd: 7, participants: ["gpu-1", "gpu-2"], missing: ["gpu-3"], syncLatencyMs: 4, bytes: 65_600, contributedBytes: 65_600, weight: 2, kChecksum: 1.25, vChecksum: -3.5 },
      ],
      finish: { status: "left", participants: ["gpu-2", "gpu-3"], sessionStatus: "active" },
    });
    expect(text).toBe(
      [
        "Session fa_1: node gpu-1 (initiator), sync interval 8, 1 sync",
        "  blocks 0-7: 2 participants (gpu-1,gpu-2, missing gpu-3), gateway 4 ms, sent 65600 B, got 65600 B, applied K sum 1.25000 V sum -3.50000",
        "Left the session (still active with gpu-2, gpu-3).",
      ].join("\n"),
    );
    expect(formatSessions([])).toBe("No active federated-attention session includes this node.");
  });
});
