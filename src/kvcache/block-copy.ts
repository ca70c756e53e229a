// Rows between the graphs' layouts and a sequence's storage. The graphs output new K/V rows
// token-major ([batch, tokens, kvHeads, headDim]) and take the past head-major ([batch, kvHeads,
// past, headDim]); a block holds each head's rows contiguously (block-pool.ts), so a write splits a
// row by head and a read copies one run per head and block. Quantized stairs are stored per layer
// and head for the same reason: each dequantizes straight into its head's run of the past.
import { copyToHeadMajor } from '../model/onnx-layout.ts';
import type { BlockPool } from './block-pool.ts';
import { dequantize } from './quant.ts';
import type { SeqEntry } from './sequence.ts';

/** Writes rows `rows` (indices, in order) of the token-major `srcKeys[l]`/`srcValues[l]`
 *  ([*, kvHeads * headDim]) to the sequence's fp32 region from its row `fp` on; its blocks must
 *  already cover them. */
export function writeRows(pool: BlockPool, e: SeqEntry, fp: number, srcKeys: Float32Array[], srcValues: Float32Array[], rows: ArrayLike<number>): void {
  const { layers, kvHeads: H, headDim: D } = pool.shape;
  const W = H * D;
  const bs = pool.blockSize;
  for (let r = 0; r < rows.length; r++) {
    const pos = fp + r;
    const block = pool.blocks[e.blocks[(pos / bs) | 0]];
    const inBlock = pos % bs;
    for (let l = 0; l < layers; l++) {
      // a block's layer is a head-major past of blockSize rows: the row goes to each head's run
      copyToHeadMajor(srcKeys[l], rows[r] * W, 1, block, pool.off(l, 0, 0, 0), bs, inBlock, H, D);
      copyToHeadMajor(srcValues[l], rows[r] * W, 1, block, pool.off(l, 1, 0, 0), bs, inBlock, H, D);
    }
  }
}

/** Copies rows [from, to) (to <= e.length) of layers [layerFrom, layerTo) into out[i] (layer
 *  layerFrom + i), a head-major past at batch row `row` with past dimension `past`. A stair the
 *  range touches is dequantized whole (see PagedKvCache.gatherRange). */
export function readRows(pool: BlockPool, e: SeqEntry, layerFrom: number, layerTo: number, from: number, to: number, outKeys: Float32Array[], outValues: Float32Array[], row: number, past: number): void {
  const { kvHeads: H, headDim: D } = pool.shape;
  const base = row * H * past * D;
  let start = 0;
  for (const s of e.segments) {
    if (start < to && start + s.tokens > from) {
      for (let l = layerFrom; l < layerTo; l++) {
        for (let h = 0; h < H; h++) {
          dequantize(s.keys[l * H + h], outKeys[l - layerFrom], base + (h * past + start) * D);
          dequantize(s.values[l * H + h], outValues[l - layerFrom], base + (h * past + start) * D);
        }
      }
    }
    start += s.tokens;
  }
  const bs = pool.blockSize;
  for (let pos = Math.max(from, e.quantized); pos < to; ) {
    const fp = pos - e.quantized;
    const inBlock = fp % bs;
    const n = Math.min(bs - inBlock, to - pos);
    const block = pool.blocks[e.blocks[(fp / bs) | 0]];
    for (let l = layerFrom; l < layerTo; l++) {
      blockRows(pool, block, l, inBlock, n, outKeys[l - layerFrom], outValues[l - layerFrom], base, past, pos);
    }
    pos += n;
  }
}

/** Rows [from, from + n) of layer `l` of a block, each head's run in one copy, to positions
 *  pos.. of a head-major past whose batch row starts at `base`. */
function blockRows(pool: BlockPool, block: Float32Array, l: number, from: number, n: number, outK: Float32Array, outV: Float32Array, base: number, past: number, pos: number): void {
  const { kvHeads: H, headDim: D } = pool.shape;
  for (let h = 0; h < H; h++) {
    const o = base + (h * past + pos) * D;
    const k = pool.off(l, 0, h, from);
    const v = pool.off(l, 1, h, from);
    outK.set(block.subarray(k, k + n * D), o);
    outV.set(block.subarray(v, v + n * D), o);
  }
}
