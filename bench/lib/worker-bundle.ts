/** The worker bundler moved to worker/selfhost/bundle.ts (shared with `npm run serve`); re-exported for the benchmark's modules. */
export * from "../../worker/selfhost/bundle.ts";
