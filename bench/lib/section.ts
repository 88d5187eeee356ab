import type { Teardown } from "../teardown.ts";

/** What a benchmark section that starts its own edge needs from the run (bench/run.ts). */
export interface SectionOptions {
  pgAdminUrl: string;
  redisUrl: string;
  host: string;
  quick: boolean;
  teardown: Teardown;
  log: (line: string) => void;
}
