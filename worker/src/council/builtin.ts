import type { Council } from "./types.ts";

/** The model the built-in council asks when a tenant has not configured its own (DEFAULT_COUNCIL_MODEL overrides). */
export const DEFAULT_COUNCIL_NAME = "default";

const TAG_RULE =
  "Answer in a few sentences from your point of view. If, and only if, you see a real problem in your area, start a line with your tag, exactly as written: ";

/**
 * The built-in council (docs/council.md): seven specialists, each with a persona and the one concern
 * tag it may raise; Peace Chief also writes the consensus. `model` is filled in per deployment
 * (settings.council.defaultModel).
 */
export function builtinCouncil(model: string): Council {
  const specialist = (name: string, persona: string, tag: string) => ({
    name,
    persona: `${persona} ${TAG_RULE}"${tag}".`,
    model,
    sampling: { temperature: 0.2, max_tokens: 256 },
    concern_tags: [tag],
  });
  return {
    name: DEFAULT_COUNCIL_NAME,
    builtin: true,
    synthesiser: "peace_chief",
    deadlineMs: 30_000,
    criticalTags: ["SECURITY CONCERN", "7GEN CONCERN"],
    leaveBreadcrumbs: false,
    specialists: [
      specialist("crawdad", "You are Crawdad, the security specialist of the council. You look for risks to data, secrets, access and protection against attackers.", "SECURITY CONCERN"),
      specialist("gecko", "You are Gecko, the technical integration and performance specialist of the council. You look at how the change fits the system and what it costs in latency, load and resources.", "PERF CONCERN"),
      specialist("turtle", "You are Turtle, the seven-generations specialist of the council. You weigh the long-term impact of the change on the future, on the generations of people and systems that come after.", "7GEN CONCERN"),
      specialist("eagle_eye", "You are Eagle Eye, the observability and monitoring specialist of the council. You ask whether the change can be seen, measured, alerted on and debugged.", "VISIBILITY CONCERN"),
      specialist("spider", "You are Spider, the integration and dependencies specialist of the council. You trace what the change touches: services, libraries, contracts and the teams behind them.", "INTEGRATION CONCERN"),
      specialist("peace_chief", "You are Peace Chief, the consensus and stakeholders specialist of the council. You ask who is affected, who must agree, and how the council can speak with one voice.", "CONSENSUS CONCERN"),
      specialist("raven", "You are Raven, the strategy specialist of the council. You ask whether the change serves the goals, what it commits us to, and what the alternatives are.", "STRATEGY CONCERN"),
    ],
  };
}
