/** A circuit's state. */
export type CircuitState = "closed" | "open" | "half_open";

/** Circuit breaker settings. */
export interface BreakerOptions {
  /** Consecutive failures that open the circuit. */
  failures: number;
  /** How long it stays open before one probe decides. */
  openMs: number;
  /** Clock in ms (tests inject one). */
  now?: () => number;
}

/**
 * Per-engine circuit breaker. Requests pass only while closed. After `failures` consecutive
 * failures it opens for `openMs`; then it is half_open and still refuses requests: the health
 * prober's next result decides (ok closes it, a failure re-opens it). A health probe is cheap and
 * never costs a user request, which is why a trial request is not used to decide.
 */
export class CircuitBreaker {
  readonly #failures: number;
  readonly #openMs: number;
  readonly #now: () => number;
  #consecutive = 0;
  /** When the circuit opened; null while closed. */
  #openedAt: number | null = null;

  constructor(options: BreakerOptions) {
    this.#failures = Math.max(1, options.failures);
    this.#openMs = options.openMs;
    this.#now = options.now ?? Date.now;
  }

  /** Current state; open turns half_open by itself once openMs passed. */
  state(): CircuitState {
    if (this.#openedAt === null) return "closed";
    return this.#now() - this.#openedAt >= this.#openMs ? "half_open" : "open";
  }

  /** Whether a request may be sent (closed only). */
  allowsRequests(): boolean {
    return this.#openedAt === null;
  }

  /** Ms until an open circuit turns half_open (0 when closed or already half_open). */
  msUntilHalfOpen(): number {
    if (this.#openedAt === null) return 0;
    return Math.max(0, this.#openedAt + this.#openMs - this.#now());
  }

  /** Consecutive failures counted while closed. */
  consecutiveFailures(): number {
    return this.#consecutive;
  }

  /**
   * A request succeeded. While closed it resets the failure count; while open or half_open it is
   * a late answer to a request sent before the circuit opened and decides nothing.
   */
  recordSuccess(): void {
    if (this.#openedAt === null) this.#consecutive = 0;
  }

  /** A request failed: the Nth in a row opens the circuit; one while half_open re-opens it for openMs. */
  recordFailure(): void {
    const state = this.state();
    if (state === "open") return;
    if (state === "half_open") {
      this.#open();
      return;
    }
    this.#consecutive++;
    if (this.#consecutive >= this.#failures) this.#open();
  }

  /** A health probe's result: decides a half_open circuit; ignored otherwise (health is tracked apart). */
  recordProbe(ok: boolean): void {
    if (this.state() !== "half_open") return;
    if (ok) {
      this.#openedAt = null;
      this.#consecutive = 0;
    } else {
      this.#open();
    }
  }

  #open(): void {
    this.#openedAt = this.#now();
    this.#consecutive = 0;
  }
}
