/** An agent streaming profile (docs/streaming-profiles.md): how a stream is cut and paced for its client. */
export interface StreamProfile {
  name: string;
  /** Completion tokens per content chunk. */
  chunkTokens: number;
  /** The whole stream's time limit. */
  timeoutMs: number;
  /** Tokens held between engine and client before the engine is paused. */
  bufferTokens: number;
  /** Least time between two content chunks. */
  intervalMs: number;
}
