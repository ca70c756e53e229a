// SAQ's commit-time step (staircase adaptive quantization, docs/methods.md §7.2 on KIVI's scheme;
// its options in saq.ts): the newest `window` tokens stay fp32. Whenever the fp32 region holds
// window + step tokens, its oldest `step` tokens become a quantized segment at the top stair (keys
// per channel, values per token) and every older segment steps down one stair until the floor.
// Each layer's keys and values may have stairs of their own (`layers`); otherwise `bits`.
//
// Demotions happen only here, when PagedKvCache.append commits rows, and so only to committed
// (verified) rows: a draft row never reaches a quantized tier. Each rewrite of committed rows is
// recorded in `rewritten` so that readers holding a copy of the past (batch-past.ts) re-read just
// those rows.
import type { BlockPool } from './block-pool.ts';
import { quantize, requantize, type QuantBlock } from './quant.ts';
import { segBytes, stairBits, type SaqOptions, type Segment } from './saq.ts';
import type { SeqEntry } from './sequence.ts';

/** Moves full stairs out of the sequence's fp32 window and steps older stairs down. */
export function descendStairs(e: SeqEntry, pool: BlockPool, saq: SaqOptions): void {
  const { window, step, valueGroup } = saq;
  const { blockSize } = pool;
  while (e.length - e.quantized >= window + step) {
    const nBlocks = step / blockSize;
    const { layers, kvHeads: H, headDim: D } = pool.shape;
    // [step, headDim]: one head's rows of the stair, token-major as `quantize` takes them
    const tmpK = new Float32Array(step * D);
    const tmpV = new Float32Array(step * D);
    const keys: QuantBlock[] = [];
    const values: QuantBlock[] = [];
    for (let l = 0; l < layers; l++) {
      for (let h = 0; h < H; h++) {
        // the stair's rows of one head: one run per block
        for (let b = 0; b < nBlocks; b++) {
          const block = pool.blocks[e.blocks[b]];
          const k = pool.off(l, 0, h, 0);
          const v = pool.off(l, 1, h, 0);
          tmpK.set(block.subarray(k, k + blockSize * D), b * blockSize * D);
          tmpV.set(block.subarray(v, v + blockSize * D), b * blockSize * D);
        }
        keys.push(quantize(tmpK, 0, step, D, stairBits(saq, l, 0, 0), 'channel', saq.keyGroup ?? step));
        values.push(quantize(tmpV, 0, step, D, stairBits(saq, l, 1, 0), 'token', valueGroup));
      }
    }
    pool.dropFront(e, nBlocks);
    const seg: Segment = { tokens: step, keys, values };
    e.segments.push(seg);
    pool.addQuant(e, segBytes(seg));
    e.quantized += step;
    // every older stair steps down one level (newest is last); blocks already at their width stay
    const n = e.segments.length;
    let changedFrom = e.quantized - step; // the new stair's rows: fp32 before, dequantized now
    for (let i = n - 2, start = changedFrom; i >= 0; i--) {
      const s = e.segments[i];
      start -= s.tokens;
      const age = n - 1 - i;
      const before = segBytes(s);
      let changed = false;
      const down = (q: QuantBlock, bits: number) => (q.bits === bits ? q : ((changed = true), requantize(q, bits)));
      s.keys = s.keys.map((q, j) => down(q, stairBits(saq, (j / H) | 0, 0, age)));
      s.values = s.values.map((q, j) => down(q, stairBits(saq, (j / H) | 0, 1, age)));
      pool.addQuant(e, segBytes(s) - before);
      if (changed) changedFrom = start;
    }
    e.rewritten.push([changedFrom, e.quantized]);
  }
}
