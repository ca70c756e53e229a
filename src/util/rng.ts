// A seeded PRNG shared by sampling (src/worker/sampling.ts) and drafters that search at random
// (ADED): same seed, same stream, so seeded requests repeat exactly.

/** Seeded PRNG (SplitMix32-style mixing of a Weyl sequence): fast, reproducible, per request. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  }
}
