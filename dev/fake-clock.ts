/**
 * For tests only: shifts the wall clock of the Node process it is preloaded into, as a host whose
 * clock is off would have it (the chaos suite's clock-skew scenario, docs/testing.md). Loaded with
 * `NODE_OPTIONS="--import <this file>"` and `SWITCHYARD_TEST_CLOCK_OFFSET_FILE=<file>`: the file holds
 * the offset in milliseconds (signed; empty or missing = 0), re-read every 100 ms, so a test can step
 * the clock of a running process. `Date.now()` and `new Date()` move; timers and `performance.now()`
 * (monotonic) do not, as on a real host whose clock is wrong. Nothing in the product loads it.
 */
import { readFileSync } from "node:fs";

const file = process.env.SWITCHYARD_TEST_CLOCK_OFFSET_FILE;

function readOffset(path: string): number {
  try {
    const value = Number(readFileSync(path, "utf8").trim() || 0);
    return Number.isFinite(value) ? value : 0;
  } catch {
    return 0;
  }
}

if (file !== undefined && file !== "") {
  let offsetMs = readOffset(file);
  setInterval(() => {
    offsetMs = readOffset(file);
  }, 100).unref();
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  const now = () => realNow() + offsetMs;
  RealDate.now = now;
  globalThis.Date = new Proxy(RealDate, {
    construct(target, args: unknown[], newTarget: NewableFunction) {
      return Reflect.construct(target, args.length === 0 ? [now()] : args, newTarget) as object;
    },
    // Date() called as a function returns the current time as a string.
    apply() {
      return new RealDate(now()).toString();
    },
  });
}
