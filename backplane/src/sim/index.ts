/**
 * The simulated vLLM engine: vLLM's OpenAI-compatible server (v0.10-0.11 wire formats) with a
 * deterministic fake model, used by the local stack, the tests and the benchmarks in place of a
 * GPU. See docs/simulator.md.
 */
export { isHelpRequest, parseModelSpec, parseSimArgs, SIM_HELP } from "./args.ts";
export { type SimModel, type SimOptions, SimOptionsError, simOptions } from "./options.ts";
export { SIM_VLLM_VERSION } from "./routes.ts";
export { type SimEngine, type SimStats, startSimEngine } from "./server.ts";
export { CHAT_TEMPLATE_TOKENS, countPromptTokens, countTextTokens, type SimChatMessage } from "./tokenizer.ts";
