// SAQ, the staircase below the fp32 window (docs/methods.md §7.2): its options, their defaults and
// the bookkeeping of quantized stairs. staircase.ts moves rows into stairs at commit.
import type { KvShape } from './block-pool.ts';
import { quantBytes, SUPPORTED_BITS, type QuantBlock } from './quant.ts';

export interface SaqOptions {
  /** Newest tokens kept at full precision. Defaults to `32`. */
  window: number;
  /** Stair width in tokens (a multiple of the block size). Defaults to `32`. */
  step: number;
  /** Bit widths from the newest quantized stair down to the floor (8, 6, 5, 4, 3 or 2). */
  bits: number[];
  /** Channels per value group (per-token quantization); divides the head dim (each head is
   *  quantized on its own). Defaults to `32`. */
  valueGroup: number;
  /** Tokens per key group (per-channel quantization); divides `step`. Defaults to `step`. */
  keyGroup?: number;
  /** Per layer (by index), stairs for its keys and/or values in place of `bits`: bit widths where
   *  the layer is more (or less) sensitive than the rest. */
  layers?: { keys?: number[]; values?: number[] }[];
}

/**
 * The default staircase: 32 fp32 tokens, then 32-token stairs (groups of 32, KIVI's G), fp16
 * statistics. The newest stair is 8 bits everywhere; older stairs drop to a width per layer and
 * K/V chosen by measured sensitivity (specserve-tiny, on Python standard-library text, not the
 * held-out text; `bench/saq-sensitivity.ts`): with everything else at 8 bits, quantizing one
 * layer's keys or values to 4 bits raises the KL from fp32 by s_i; layer 0's values carry ~60% of
 * the total, then the keys of layers 5 and 1. Each bit quarters a slot's KL, so bits go greedily
 * where they buy the most, up to a mean of 5.25 bits: 24.8% of fp32's bytes at 1,000+ tokens, and
 * ~5x less KL than a uniform staircase of the same bytes (ten 8-bit stairs, then 4). Shortening
 * the fp32 window costs far more than it saves (with none, worse than 4 bits everywhere). Another
 * model should be measured again: layers not listed here use `bits`.
 */
export const SAQ_DEFAULTS: SaqOptions = {
  window: 32,
  step: 32,
  bits: [8, 5],
  valueGroup: 32,
  layers: [
    { keys: [8, 5], values: [8] },
    { keys: [8, 6], values: [8, 6] },
    { keys: [8, 5], values: [8, 4] },
    { keys: [8, 5], values: [8, 4] },
    { keys: [8, 5], values: [8, 4] },
    { keys: [8, 6], values: [8, 5] },
  ],
};

/** The staircase in words, for docs and reports: "the newest 32 tokens fp32, then 32-token stairs
 *  at 8 then 4–8 bits (by layer and K/V)". `layers` is the model's layer count. */
export function describeSaq(o: SaqOptions, layers = o.layers?.length ?? 0): string {
  const stairs = [o.bits];
  for (let l = 0; l < layers; l++) stairs.push(o.layers?.[l]?.keys ?? o.bits, o.layers?.[l]?.values ?? o.bits);
  const depth = Math.max(...stairs.map((st) => st.length));
  const widths: string[] = [];
  for (let i = 0; i < depth; i++) {
    const at = stairs.map((st) => st[Math.min(i, st.length - 1)]);
    const lo = Math.min(...at);
    const hi = Math.max(...at);
    widths.push(lo === hi ? String(lo) : `${lo}–${hi}`);
  }
  const varies = widths.some((w) => w.includes('–'));
  return `the newest ${o.window} tokens fp32, then ${o.step}-token stairs at ${widths.join(' then ')} bits${varies ? ' (by layer and K/V)' : ''}`;
}

/** Refuses a staircase the cache cannot store. */
export function validateSaq(saq: SaqOptions, shape: KvShape, blockSize: number): void {
  if (saq.step % blockSize !== 0) throw new Error(`SAQ step ${saq.step} must be a multiple of the block size ${blockSize}`);
  if (shape.headDim % saq.valueGroup !== 0) throw new Error(`SAQ value group ${saq.valueGroup} must divide the head dim ${shape.headDim}`);
  if (saq.bits.length === 0) throw new Error('SAQ needs at least one bit width');
  for (const st of [saq.bits, ...(saq.layers ?? []).flatMap((o) => [o.keys, o.values])]) {
    if (!st) continue;
    if (st.length === 0) throw new Error('SAQ stairs need at least one bit width');
    for (const b of st) {
      if (!(SUPPORTED_BITS as readonly number[]).includes(b)) throw new Error(`SAQ bit width ${b} is not one of ${SUPPORTED_BITS.join(', ')}`);
      if (8 % b === 0 && shape.headDim % (8 / b) !== 0) throw new Error(`SAQ: ${b}-bit packing needs a head dim that is a multiple of ${8 / b}, not ${shape.headDim}`);
    }
  }
}

/** Bit width of layer `layer`'s keys (0) or values (1) in the stair `age` steps below the
 *  newest (the last width is the floor). */
export function stairBits(saq: SaqOptions, layer: number, kv: 0 | 1, age: number): number {
  const o = saq.layers?.[layer];
  const st = (kv === 0 ? o?.keys : o?.values) ?? saq.bits;
  return st[Math.min(age, st.length - 1)];
}

/** One quantized stair of a sequence. */
export interface Segment {
  tokens: number;
  /** Per layer and kv head, at layer * kvHeads + head: each head's rows quantized on their own
   *  (the same codes and statistics as the whole row, whose groups never span two heads), so a
   *  stair dequantizes straight into the head-major past. */
  keys: QuantBlock[];
  values: QuantBlock[];
}

/** A stair's tokens: 'q8' when every layer's keys and values hold 8 bits, 'q5-8' when widths
 *  range over 5..8. */
export function tokenTier(s: Segment): string {
  let lo = Infinity;
  let hi = 0;
  for (const q of [...s.keys, ...s.values]) {
    lo = Math.min(lo, q.bits);
    hi = Math.max(hi, q.bits);
  }
  return lo === hi ? `q${lo}` : `q${lo}-${hi}`;
}

/** A stair's bytes go to the tier of each block's width ('q8', 'q5', ...). */
export function addTierBytes(tiers: Record<string, number>, s: Segment): void {
  for (const q of [...s.keys, ...s.values]) tiers[`q${q.bits}`] = (tiers[`q${q.bits}`] ?? 0) + quantBytes(q);
}

export function segBytes(s: Segment): number {
  let n = 0;
  for (const q of s.keys) n += quantBytes(q);
  for (const q of s.values) n += quantBytes(q);
  return n;
}
