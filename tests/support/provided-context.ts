import type { WorkerTestContext } from "./context.ts";

// Values the worker tests receive through vitest's provide/inject (tests/support/worker-global-setup.ts).
declare module "vitest" {
  export interface ProvidedContext extends WorkerTestContext {}
}
