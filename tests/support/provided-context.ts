import type { WorkerTestContext } from "./context.ts";

// Values the worker tests receive through vitest's provide/inject (tests/support/worker-global-setup.ts).
declare module "vitest" {
  // Module augmentation merges into vitest's interface, so this must stay an (empty) interface.
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  export interface ProvidedContext extends WorkerTestContext {}
}
