import type { ModelMetrics } from "./metrics.ts";
import type { SchedulingPolicy } from "./options.ts";

/** What the scheduler needs of a request. */
export interface Schedulable {
  metrics: ModelMetrics;
  /** vLLM's request `priority`: lower runs earlier under the priority policy (absent: 0). */
  priority?: number;
  /** Called once, when the request gets a slot. May finish (and release) synchronously. */
  start(): void;
}

/** An admission queue in front of a fixed number of generation slots. */
export interface Scheduler {
  /** Queues a request; it starts at once when a slot is free. */
  submit(job: Schedulable): void;
  /** Removes a still-waiting request (client went away); false if it was not waiting. */
  cancel(job: Schedulable): boolean;
  /** Frees the slot of a running request and starts the next waiting one. */
  release(job: Schedulable): void;
  /** Waiting requests (for shutdown). */
  drainWaiting(): Schedulable[];
}

/** The waiting requests, in the order the policy takes them. Cancelled entries are skipped by the caller. */
interface WaitQueue {
  push(job: Schedulable): void;
  /** The next request to run, or undefined when empty. */
  shift(): Schedulable | undefined;
}

/** fcfs: arrival order. */
function fifoQueue(): WaitQueue {
  let queue: (Schedulable | null)[] = [];
  let head = 0;
  return {
    push(job) {
      queue.push(job);
    },
    shift() {
      if (head >= queue.length) return undefined;
      const job = queue[head] ?? undefined;
      queue[head++] = null;
      if (head > 1024 && head * 2 > queue.length) {
        queue = queue.slice(head);
        head = 0;
      }
      return job;
    },
  };
}

/**
 * priority: vLLM V1's waiting queue under `--scheduling-policy priority`, a heap ordered by
 * (priority, arrival time): lower priority values first, ties in arrival order.
 */
function priorityQueue(): WaitQueue {
  const heap: { job: Schedulable; priority: number; seq: number }[] = [];
  let seq = 0;
  const before = (a: number, b: number) => {
    const x = heap[a];
    const y = heap[b];
    if (!x || !y) return false;
    return x.priority !== y.priority ? x.priority < y.priority : x.seq < y.seq;
  };
  const swap = (a: number, b: number) => {
    const x = heap[a];
    const y = heap[b];
    if (!x || !y) return;
    heap[a] = y;
    heap[b] = x;
  };
  return {
    push(job) {
      heap.push({ job, priority: job.priority ?? 0, seq: seq++ });
      for (let i = heap.length - 1; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!before(i, parent)) break;
        swap(i, parent);
        i = parent;
      }
    },
    shift() {
      const top = heap[0];
      if (!top) return undefined;
      const last = heap.pop();
      if (heap.length > 0 && last) {
        heap[0] = last;
        for (let i = 0; ; ) {
          const l = 2 * i + 1;
          const r = l + 1;
          let best = i;
          if (l < heap.length && before(l, best)) best = l;
          if (r < heap.length && before(r, best)) best = r;
          if (best === i) break;
          swap(i, best);
          i = best;
        }
      }
      return top.job;
    },
  };
}

/**
 * vLLM has no load shedding: requests beyond the batch wait in the scheduler queue and show
 * up as vllm:num_requests_waiting. This reproduces that with `maxConcurrency` slots, served in
 * arrival order (fcfs) or by (priority, arrival) (`policy` priority).
 */
export function createScheduler(maxConcurrency: number, policy: SchedulingPolicy = "fcfs"): Scheduler {
  const queue = policy === "priority" ? priorityQueue() : fifoQueue();
  let running = 0;
  let pumping = false;
  const waiting = new Set<Schedulable>();

  // A loop rather than recursion: a job that finishes synchronously releases its slot from
  // inside start(), and a long queue of such jobs must not grow the stack.
  function pump(): void {
    if (pumping) return;
    pumping = true;
    try {
      while (running < maxConcurrency && waiting.size > 0) {
        const job = queue.shift();
        if (!job) break;
        if (!waiting.delete(job)) continue;
        job.metrics.waiting--;
        job.metrics.running++;
        running++;
        job.start();
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
