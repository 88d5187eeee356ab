import type { ScenarioChoice } from "./args.ts";

/** How the simulated engine is started for a group of scenarios. */
export interface EngineProfile {
  name: "instant" | "paced";
  description: string;
  simArgs: string[];
}

/** Zero prefill and decode time: the engine costs only its HTTP handling, so what remains is overhead. */
export const INSTANT_ENGINE: EngineProfile = {
  name: "instant",
  description: "0 ms TTFT, 0 ms/token, 32 tokens",
  simArgs: ["--ttft-ms", "0", "--inter-token-ms", "0", "--output-tokens", "32"],
};

/** A small but realistic pace, so every token is its own chunk on the wire. */
export const PACED_ENGINE: EngineProfile = {
  name: "paced",
  description: "50 ms TTFT, 10 ms/token, 32 tokens",
  simArgs: ["--ttft-ms", "50", "--inter-token-ms", "10", "--output-tokens", "32"],
};

/** One measured workload. */
export interface Scenario {
  name: "nonstream" | "stream" | "stream-paced";
  title: string;
  engine: EngineProfile;
  stream: boolean;
}

/** Every scenario, in the order they run. */
export const SCENARIOS: readonly Scenario[] = [
  { name: "nonstream", title: "chat, not streamed", engine: INSTANT_ENGINE, stream: false },
  { name: "stream", title: "chat, streamed", engine: INSTANT_ENGINE, stream: true },
  { name: "stream-paced", title: "chat, streamed", engine: PACED_ENGINE, stream: true },
];

/** The scenarios a --scenario choice runs, in order (scenarios sharing an engine are adjacent). */
export function selectScenarios(choice: ScenarioChoice): Scenario[] {
  if (choice === "all") return [...SCENARIOS];
  return SCENARIOS.filter((s) => (choice === "stream" ? s.stream : !s.stream));
}

/**
 * The body every request sends, to the engine and to the gateway alike. The prompt is fixed, so
 * every answer is the same 31 words plus EOS (docs/simulator.md, "The fake model").
 */
export function chatBody(stream: boolean): string {
  return JSON.stringify({
    model: "sim-llama-8b",
    messages: [{ role: "user", content: "Describe a railway switchyard in one sentence." }],
    ...(stream ? { stream: true } : {}),
  });
}
