/**
 * Deterministic text: a PRNG seeded by (prompt hash, seed, choice index) picks words from a
 * small vocabulary. One word is one token; the first token has no leading space and is
 * capitalised, every later one is " word". Words are at most 8 letters so the simulated
 * tokenizer re-counts generated text as one token per word.
 */

const WORDS = (
  "the of and to in is that it was for on are as with his they at be this from have or by one had not but what all " +
  "were when we there can an your which their said if do will each about how up out them then she many some so these " +
  "would other into has more her two like him see time could no make than first been its who now people my made over " +
  "did down only way find use may water long little very after words called just where most know get through back " +
  "much before go good new write our used me man too any day same right look think also around another came come work " +
  "three word must because does part even place well such here take why things help put years distinct away again " +
  "off went old number great tell men say small every found still between name should home big give air line set own " +
  "under read last never us left end along while might next sound below saw anything thought both few those always " +
  "looked show large often together asked house world going want school vital until form food keep children feet " +
  "land side without boy once animals life enough took often four head above kind began almost live page got earth " +
  "need far hand high year mother light parts country father let night follow picture being study second eyes soon " +
  "times story boys since white days paper hard near sentence better best across during today others however sure means " +
  "knew try told young miles sun ways thing whole hear example heard several change answer room sea against top turned " +
  "learn point city play toward five using himself usually engine token cluster latency gateway stream model signal"
).split(" ");

/** Every word with a leading space (tokens after the first). */
const REST = WORDS.map((w) => ` ${w}`);
/** Every word capitalised (the first token). */
const FIRST = WORDS.map((w) => w.charAt(0).toUpperCase() + w.slice(1));

/** Murmur3 finaliser: spreads the bits of a 32-bit value. */
function fmix(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** 32-bit PRNG state from a prompt hash, a seed (any safe integer, also negative) and a choice index. */
export function mixSeed(promptHash: number, seed: number, index: number): number {
  const lo = seed | 0;
  const hi = Math.floor(seed / 0x1_0000_0000) | 0;
  return fmix(promptHash ^ fmix(lo ^ 0x9e3779b9) ^ fmix(Math.imul(hi, 31) + Math.imul(index + 1, 0x27d4eb2d)));
}

/** mulberry32: a small, fast 32-bit PRNG; each call returns the next uint32. */
export function mulberry32(seedState: number): () => number {
  let state = seedState >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The vocabulary word a PRNG draw picks (lower case, no space). */
export function pickWord(draw: number): string {
  return WORDS[draw % WORDS.length] ?? "the";
}

/** Tokens of generated text over a PRNG: the first capitalised without a space, then " word". */
export function wordTokens(random: () => number): () => string {
  let count = 0;
  return () => {
    const index = random() % WORDS.length;
    const words = count === 0 ? FIRST : REST;
    count++;
    return words[index] ?? " the";
  };
}

/** A deterministic token stream for one choice: each call returns the next token's text. */
export function tokenSource(seedState: number): () => string {
  return wordTokens(mulberry32(seedState));
}
