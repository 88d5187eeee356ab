import { readFileSync } from "node:fs";
import { z } from "zod";
import { contentText, type SimChatMessage } from "./tokenizer.ts";

/**
 * Scripted answers (`--script FILE`), for tests only: a chat request whose system prompt and last
 * user message contain an entry's substrings is answered with the entry's text instead of the
 * model's word stream. Everything around the text is unchanged: the text is split into tokens by
 * the simulator's tokenizer, streamed one chunk per token, cut by limits and stop strings, counted
 * in usage and metrics. It lets a test make the fake model answer as a persona would (the council
 * evaluation harness, eval/) without a GPU. See docs/simulator.md.
 */

/** One scripted answer: the first entry that matches a request wins. */
export interface SimScriptEntry {
  /** A substring of the system prompt (every system or developer message's text, joined by "\n"); "" matches any. */
  system: string;
  /** A substring of the last user message's text; absent matches any. */
  user?: string;
  /** The text the model writes (then EOS). */
  answer: string;
}

/** Schema of a script entry (unknown keys are refused, so a misspelt `users` is not silently ignored). */
export const scriptEntrySchema = z.strictObject({
  system: z.string(),
  user: z.string().optional(),
  answer: z.string(),
});

/** Reads and validates a script file (a JSON array of entries); throws an Error naming the file and the entry. */
export function loadSimScript(file: string): SimScriptEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(`cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  const parsed = z.array(scriptEntrySchema).safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? `entry ${issue.path.join(".")}` : "expected a JSON array of {system, user?, answer}";
  throw new Error(`${file}: ${where}: ${issue?.message ?? "invalid"}`);
}

/** The system prompt a script matches against: the text of every system and developer message, joined by "\n". */
function systemText(messages: readonly SimChatMessage[]): string {
  const parts: string[] = [];
  for (const m of messages) if (m.role === "system" || m.role === "developer") parts.push(contentText(m.content));
  return parts.join("\n");
}

function lastUserText(messages: readonly SimChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role === "user") return contentText(m.content);
  }
  return "";
}

/** The scripted answer for a conversation: the first matching entry's text, or null (the model's usual text). */
export function scriptedAnswer(script: readonly SimScriptEntry[], messages: readonly SimChatMessage[]): string | null {
  if (script.length === 0) return null;
  const system = systemText(messages);
  const user = lastUserText(messages);
  for (const entry of script) {
    if (system.includes(entry.system) && (entry.user === undefined || user.includes(entry.user))) return entry.answer;
  }
  return null;
}
