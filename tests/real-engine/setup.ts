/**
 * Global setup of `npm run test:real-engine`: builds llama-server (or reuses the build under
 * `.data/llama`, or `LLAMA_SERVER`) and makes the tiny test model, then hands both to the tests.
 */
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { ensureLlamaServer, llamaDir } from "../../dev/real-engine/build.ts";
import { makeTinyModel } from "../../dev/real-engine/model.ts";

export default async function setup(project: TestProject): Promise<void> {
  const root = project.config.root;
  const log = (line: string) => console.log(`[real-engine] ${line}`);
  const { binary, src } = await ensureLlamaServer(root, log);
  const model = makeTinyModel(src, join(llamaDir(root), "model", "tiny.gguf"));
  log(`llama-server ${binary}, model ${model}`);
  project.provide("llama", { binary, src, model });
}
