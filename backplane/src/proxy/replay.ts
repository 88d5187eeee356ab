/** Nonces the backplane remembers at most (about 6 MB); see NonceStore. */
export const DEFAULT_NONCE_CAPACITY = 100_000;

/** The answer of `NonceStore.claim`. */
export type NonceClaim = "fresh" | "replayed" | "full";

/**
 * The nonces of the signed requests this node accepted, each kept until its request's timestamp
 * leaves the skew window (after that the timestamp check refuses a replay by itself). Memory is
 * bounded: at `capacity` live entries a new nonce is refused (`full`, answered 503 so the gateway
 * tries another node) rather than an older one forgotten, since forgetting would reopen a replay.
 * 100 000 entries in a 121 s window is about 800 signed requests per second, far above what one
 * GPU host serves.
 */
export class NonceStore {
  readonly #expiresAt = new Map<string, number>();
  readonly #capacity: number;

  constructor(capacity = DEFAULT_NONCE_CAPACITY) {
    this.#capacity = capacity;
  }

  /** Records `nonce` until `expiresAtMs`; `replayed` if it is already recorded and live. */
  claim(nonce: string, expiresAtMs: number, nowMs: number = Date.now()): NonceClaim {
    const known = this.#expiresAt.get(nonce);
    if (known !== undefined && known > nowMs) return "replayed";
    this.#sweep(nowMs, false);
    if (this.#expiresAt.size >= this.#capacity) this.#sweep(nowMs, true);
    if (this.#expiresAt.size >= this.#capacity) return "full";
    this.#expiresAt.set(nonce, expiresAtMs);
    return "fresh";
  }

  /** Live entries (for tests and metrics). */
  get size(): number {
    return this.#expiresAt.size;
  }

  // Entries arrive roughly in expiry order: drop expired ones from the front, and scan the whole
  // map only when it is full (a timestamp far in the past can sit behind a later one).
  #sweep(nowMs: number, full: boolean): void {
    for (const [nonce, expiresAt] of this.#expiresAt) {
      if (expiresAt <= nowMs) this.#expiresAt.delete(nonce);
      else if (!full) return;
    }
  }
}
