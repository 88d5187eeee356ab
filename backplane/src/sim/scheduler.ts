import type { ModelMetrics } from "./metrics.ts";

/** What the scheduler needs of a request. */
export interface Schedulable {
  metrics: ModelMetrics;
  /** Called once, when the request gets a slot. May finish (and release) synchronously. */
  start(): void;
}

/** A FIFO admission queue in front of a fixed number of generation slots. */
export interface Scheduler {
  /** Queues a request; it starts at once when a slot is free. */
  submit(job: Schedulable): void;
  /** Removes a still-waiting request (client went away); false if it was not waiting. */
  cancel(job: Schedulable): boolean;
  /** Frees the slot of a running request and starts the next waiting one. */
  release(job: Schedulable): void;
  /** Waiting requests, oldest first (for shutdown). */
  drainWaiting(): Schedulable[];
}

/**
 * vLLM has no load shedding: requests beyond the batch wait in the scheduler queue and show
 * up as vllm:num_requests_waiting. This reproduces that with `maxConcurrency` slots.
 */
export function createScheduler(maxConcurrency: number): Scheduler {
  let queue: (Schedulable | null)[] = [];
  let head = 0;
  let running = 0;
  let pumping = false;
  const waiting = new Set<Schedulable>();

  // A loop rather than recursion: a job that finishes synchronously releases its slot from
  // inside start(), and a long queue of such jobs must not grow the stack.
  function pump(): void {
    if (pumping) return;
    pumping = true;
    try {
      while (running < maxConcurrency && head < queue.length) {
        const job = queue[head];
        queue[head++] = null;
        if (!job || !waiting.delete(job)) continue;
        job.metrics.waiting--;
        job.metrics.running++;
        running++;
        job.start();
      }
      if (head > 1024 && head * 2 > queue.length) {
        queue = queue.slice(head);
        head = 0;
      }
    } finally {
      pumping = false;
    }
  }

  return {
    submit(job) {
      waiting.add(job);
      job.metrics.waiting++;
      queue.push(job);
      pump();
    },
    cancel(job) {
      if (!waiting.delete(job)) return false;
      job.metrics.waiting--;
      return true;
    },
    release(job) {
      running--;
      job.metrics.running--;
      pump();
    },
    drainWaiting() {
      const jobs = [...waiting];
      for (const job of jobs) this.cancel(job);
      return jobs;
    },
  };
}
