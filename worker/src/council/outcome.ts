import type { Concern, Council, Recommendation } from "./types.ts";

/** Confidence lost per concern raised. */
const PER_CONCERN = 15;

/**
 * The concerns raised in `responses`: a specialist raises a tag when its answer contains the tag,
 * exactly as written, and the tag is one of its own. One entry per tag, with who raised it, in the
 * council's order.
 */
export function concernsOf(council: Council, responses: Record<string, string>): Concern[] {
  const byTag = new Map<string, string[]>();
  for (const s of council.specialists) {
    const answer = responses[s.name];
    if (answer === undefined) continue;
    for (const tag of s.concern_tags) {
      if (!answer.includes(tag)) continue;
      const raisers = byTag.get(tag) ?? [];
      raisers.push(s.name);
      byTag.set(tag, raisers);
    }
  }
  return [...byTag].map(([tag, raised_by]) => ({ tag, raised_by }));
}

/** 100, less 15 per distinct concern raised, never below 0. */
export function confidenceOf(concerns: Concern[]): number {
  return Math.max(0, 100 - PER_CONCERN * concerns.length);
}

/**
 * From the concerns: none is PROCEED; a critical one (the council's critical tags, by default
 * SECURITY and 7GEN), or three or more, is REVIEW REQUIRED; otherwise PROCEED WITH CAUTION.
 */
export function recommendationOf(council: Council, concerns: Concern[]): Recommendation {
  if (concerns.length === 0) return "PROCEED";
  if (concerns.length >= 3 || concerns.some((c) => council.criticalTags.includes(c.tag))) return "REVIEW REQUIRED";
  return "PROCEED WITH CAUTION";
}

/**
 * The canonical text a vote's audit hash is taken over: JSON of `{question, responses}` with the
 * responses' names sorted, no whitespace. Anyone holding a stored vote can recompute it
 * (docs/council.md shows how).
 */
export function auditText(question: string, responses: Record<string, string>): string {
  const sorted = Object.fromEntries(Object.keys(responses).sort().map((k) => [k, responses[k]]));
  return JSON.stringify({ question, responses: sorted });
}

/** SHA-256 (hex) of the vote's canonical text. */
export async function auditHash(question: string, responses: Record<string, string>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(auditText(question, responses))));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The synthesiser's question: the council's question and every answer, by name. */
export function synthesisPrompt(question: string, responses: Record<string, string>): string {
  const answers = Object.entries(responses).map(([name, text]) => `## ${name}\n${text}`);
  return `Question: ${question}\n\nThe specialists' answers:\n\n${answers.join("\n\n")}`;
}

/** The text a chat stream carried: its `data:` payloads' content deltas, joined. */
export function consensusFromPayloads(payloads: string): string {
  let text = "";
  for (const line of payloads.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const chunk = JSON.parse(line) as { choices?: { delta?: { content?: unknown } }[] };
      const content = chunk.choices?.[0]?.delta?.content;
      if (typeof content === "string") text += content;
    } catch {
      // not a chunk
    }
  }
  return text;
}
