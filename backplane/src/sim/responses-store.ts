import type { ChatMessage } from "./responses-request.ts";
import type { ResponseObject } from "./responses-wire.ts";

/**
 * The Responses store of one engine, as vLLM's OpenAIServingResponses keeps it in process memory
 * (`response_store`, `msg_store`, `event_store`, `background_tasks`) when the server starts with
 * VLLM_ENABLE_RESPONSES_API_STORE=1. vLLM never removes anything; the simulator keeps at most
 * `limit` responses and evicts the oldest (docs/simulator.md).
 */

/** Responses kept at most; beyond it the oldest is evicted with its messages and events. */
export const STORE_LIMIT = 10_000;

/** `bool(int(os.getenv("VLLM_ENABLE_RESPONSES_API_STORE", "0")))`; a value that is not an integer means off. */
export function storeEnabled(value: string | undefined): boolean {
  return value !== undefined && /^\s*[+-]?\d+\s*$/.test(value) && Number(value) !== 0;
}

/** The events of a background stream, kept for GET ?stream=true replays. */
export class EventLog {
  /** Whole SSE events; the index of an event is its sequence_number. */
  readonly events: string[] = [];
  #ended = false;
  readonly #followers = new Set<{ event(sse: string): void; end(): void }>();

  get ended(): boolean {
    return this.#ended;
  }

  append(events: readonly string[]): void {
    if (this.#ended) return;
    for (const sse of events) {
      this.events.push(sse);
      for (const follower of this.#followers) follower.event(sse);
    }
  }

  /** No more events: after `response.completed`, an error, a cancel or a failure. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const follower of this.#followers) follower.end();
    this.#followers.clear();
  }

  /**
   * Sends the events after sequence number `after` (-1 for all), then each new one, then calls
   * `end`. Returns a function that stops following (the reader went away).
   */
  follow(after: number, event: (sse: string) => void, end: () => void): () => void {
    for (const sse of this.events.slice(Math.max(0, after + 1))) event(sse);
    if (this.#ended) {
      end();
      return () => undefined;
    }
    const follower = { event, end };
    this.#followers.add(follower);
    return () => this.#followers.delete(follower);
  }
}

/** What the store keeps of one response. */
export interface StoredResponse {
  /** Null while a synchronous response is generating: vLLM stores it only once it is done. */
  response: ResponseObject | null;
  /** The chat messages of its prompt (instructions and earlier turns included), for previous_response_id. */
  readonly messages: readonly ChatMessage[];
  /** Background streams only. */
  readonly log: EventLog | null;
  /** Background responses only: stops the generation. */
  cancel: (() => void) | null;
}

/** A stored entry whose response object exists. */
export type VisibleResponse = StoredResponse & { response: ResponseObject };

function isVisible(entry: StoredResponse): entry is VisibleResponse {
  return entry.response !== null;
}

/** The bounded in-memory store; `enabled: false` keeps nothing, as vLLM's default. */
export class ResponsesStore {
  readonly enabled: boolean;
  readonly limit: number;
  readonly #entries = new Map<string, StoredResponse>();

  constructor(enabled: boolean, limit = STORE_LIMIT) {
    this.enabled = enabled;
    this.limit = limit;
  }

  /** Number of responses held, finished or not. */
  get size(): number {
    return this.#entries.size;
  }

  /** Keeps an entry under `id` (a repeated id replaces the old one), evicting the oldest beyond the limit. */
  put(id: string, entry: StoredResponse): void {
    if (!this.enabled) return;
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.limit) break;
      this.#entries.delete(oldest);
    }
  }

  /** The entry of a response that retrieve, cancel and previous_response_id can see. */
  get(id: string): VisibleResponse | undefined {
    const entry = this.#entries.get(id);
    return entry && isVisible(entry) ? entry : undefined;
  }

  /** Drops `entry` if it is still the one under `id` (a generation that never finished). */
  drop(id: string, entry: StoredResponse): void {
    if (this.#entries.get(id) === entry) this.#entries.delete(id);
  }
}
