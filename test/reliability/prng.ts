/** Seeded randomness for the reliability suite: a failure reproduces from its seed. */

/** mulberry32: a small, fast, seeded PRNG returning floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Rand = () => number;

/** An integer in [0, n). */
export const int = (r: Rand, n: number): number => Math.floor(r() * n);

/** One element of `xs`. */
export const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)] as T;

/** `n` random bytes; past 4 KiB a random 4 KiB block repeated (cheap huge payloads). */
export function bytes(r: Rand, n: number): Uint8Array {
  const block = Uint8Array.from({ length: Math.min(n, 4096) }, () => int(r, 256));
  if (n <= 4096) return block;
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += block.length) out.set(block.subarray(0, n - at), at);
  return out;
}
