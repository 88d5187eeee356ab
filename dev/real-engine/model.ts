/**
 * A tiny llama-architecture model for testing against a real llama-server: two blocks of width 64
 * with random weights, and the real Qwen2 tokenizer and chat template taken from llama.cpp's
 * vocabulary-only file (`models/ggml-vocab-qwen2.gguf` in its source). Its text is nonsense; its
 * tokenizer, chat template, usage counts, grammar-constrained output and metrics are the engine's own.
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { readGgufMetadata, value, writeGguf, type GgufEntry, type TensorSpec } from "./gguf.ts";

const EMBD = 64;
const HEADS = 4;
const FF = 128;
const BLOCKS = 2;
const CONTEXT = 4096;

/** The vocabulary file the model's tokenizer comes from, inside llama.cpp's source tree. */
export const VOCAB_FILE = join("models", "ggml-vocab-qwen2.gguf");

/** Deterministic small random weights (xorshift32, uniform in ±0.035, about a 0.02 standard deviation). */
function randomFill(seed: number): (count: number) => Float32Array {
  return (count) => {
    let x = seed >>> 0 || 1;
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      out[i] = (x / 0xffffffff - 0.5) * 0.07;
    }
    return out;
  };
}
const ones = (count: number): Float32Array => new Float32Array(count).fill(1);

function vocabSize(entries: GgufEntry[]): number {
  const tokens = entries.find((e) => e.key === "tokenizer.ggml.tokens");
  if (!tokens) throw new Error("the vocabulary file has no tokenizer.ggml.tokens");
  // An array value: u32 type (9), u32 element type, u64 count.
  return Number(new DataView(tokens.raw.buffer, tokens.raw.byteOffset).getBigUint64(8, true));
}

/** Writes the tiny model to `out` (unless it exists) from the llama.cpp source at `llamaSrc`; returns `out`. */
export function makeTinyModel(llamaSrc: string, out: string): string {
  if (existsSync(out)) return out;
  const tokenizer = readGgufMetadata(join(llamaSrc, VOCAB_FILE)).filter((e) => e.key.startsWith("tokenizer."));
  const vocab = vocabSize(tokenizer);
  const entries: GgufEntry[] = [
    { key: "general.architecture", raw: value.string("llama") },
    { key: "general.name", raw: value.string("switchyard-tiny") },
    { key: "general.file_type", raw: value.u32(0) },
    { key: "llama.context_length", raw: value.u32(CONTEXT) },
    { key: "llama.embedding_length", raw: value.u32(EMBD) },
    { key: "llama.block_count", raw: value.u32(BLOCKS) },
    { key: "llama.feed_forward_length", raw: value.u32(FF) },
    { key: "llama.attention.head_count", raw: value.u32(HEADS) },
    { key: "llama.attention.head_count_kv", raw: value.u32(HEADS) },
    { key: "llama.rope.dimension_count", raw: value.u32(EMBD / HEADS) },
    { key: "llama.rope.freq_base", raw: value.f32(10_000) },
    { key: "llama.attention.layer_norm_rms_epsilon", raw: value.f32(1e-5) },
    { key: "llama.vocab_size", raw: value.u32(vocab) },
    ...tokenizer,
  ];
  let seed = 1;
  const tensors: TensorSpec[] = [
    { name: "token_embd.weight", shape: [EMBD, vocab], fill: randomFill(seed++) },
    { name: "output_norm.weight", shape: [EMBD], fill: ones },
  ];
  for (let b = 0; b < BLOCKS; b++) {
    tensors.push(
      { name: `blk.${b}.attn_norm.weight`, shape: [EMBD], fill: ones },
      { name: `blk.${b}.attn_q.weight`, shape: [EMBD, EMBD], fill: randomFill(seed++) },
      { name: `blk.${b}.attn_k.weight`, shape: [EMBD, EMBD], fill: randomFill(seed++) },
      { name: `blk.${b}.attn_v.weight`, shape: [EMBD, EMBD], fill: randomFill(seed++) },
      { name: `blk.${b}.attn_output.weight`, shape: [EMBD, EMBD], fill: randomFill(seed++) },
      { name: `blk.${b}.ffn_norm.weight`, shape: [EMBD], fill: ones },
      { name: `blk.${b}.ffn_gate.weight`, shape: [EMBD, FF], fill: randomFill(seed++) },
      { name: `blk.${b}.ffn_up.weight`, shape: [EMBD, FF], fill: randomFill(seed++) },
      { name: `blk.${b}.ffn_down.weight`, shape: [FF, EMBD], fill: randomFill(seed++) },
    );
  }
  // The output projection is tied to the token embeddings (llama.cpp uses token_embd when output.weight is absent).
  mkdirSync(dirname(out), { recursive: true });
  const partial = `${out}.partial`;
  writeGguf(partial, entries, tensors);
  renameSync(partial, out);
  return out;
}
