// Paged KV cache: fixed-size fp32 blocks allocated on demand within a byte budget, a block table per
// sequence, and optionally the SAQ staircase below the fp32 window. Only committed (verified) rows
// are ever written here: draft rows live in the forward's output until the verifier has chosen which
// to keep, so no unverified row can reach a quantized tier. Rollback is a length change that frees
// whole blocks.
//
// Row layout in a block, per layer and K/V: [blockSize, kvHeads * headDim], token-major, matching
// the speculative ONNX layout [batch, past, kvHeads, headDim].
//
// SAQ (staircase adaptive quantization, methods.md §7.2 on KIVI's scheme): the newest `window`
// tokens stay fp32. Whenever the fp32 region holds window + step tokens, its oldest `step` tokens
// become a quantized segment at bits[0] (keys per channel, values per token) and every older
// segment steps down one stair (bits[1], bits[2], ...) until the floor. Demotions happen only here,
// at commit time.
import { dequantize, quantBytes, quantize, requantize, type QuantBlock } from './quant.ts';

export interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export interface SaqOptions {
  /** Newest tokens kept at full precision. Defaults to `64`. */
  window: number;
  /** Stair width in tokens (a multiple of the block size and of `valueGroup`'s token needs). Defaults to `64`. */
  step: number;
  /** Bit widths from the newest quantized stair down to the floor. Defaults to `[8, 4, 2]`. */
  bits: number[];
  /** Channels per value group (per-token quantization). Defaults to `64`. */
  valueGroup: number;
}

export const SAQ_DEFAULTS: SaqOptions = { window: 64, step: 64, bits: [8, 4, 2], valueGroup: 64 };

export interface KvStats {
  blockSize: number;
  blocksTotal: number;
  blocksFree: number;
  /** Committed tokens held, over all sequences. */
  tokens: number;
  bytesTotal: number;
  bytesInUse: number;
  /** Bytes in use by tier: 'fp32', 'q8', 'q4', 'q2'. */
  bytesByTier: Record<string, number>;
  sequences: number;
}

interface Segment {
  tokens: number;
  bits: number;
  keys: QuantBlock[];
  values: QuantBlock[];
}

interface SeqEntry {
  /** fp32 blocks holding tokens [quantized, length). */
  blocks: number[];
  /** Tokens held in quantized segments (they precede the fp32 region). */
  quantized: number;
  length: number;
  /** Oldest first. */
  segments: Segment[];
}

export class PagedKvCache {
  readonly blockSize: number;
  readonly rowWidth: number; // kvHeads * headDim
  /** Most fp32 blocks the budget allows. */
  readonly numBlocks: number;
  /** fp32 bytes one token occupies over all layers, K and V. */
  readonly bytesPerToken: number;
  readonly budgetBytes: number;
  private readonly blockBytes: number;
  /** [layers, 2, blockSize, rowWidth] per allocated block */
  private readonly pool: Float32Array[] = [];
  private readonly free: number[] = [];
  private readonly seqs = new Map<number, SeqEntry>();
  private quantBytesInUse = 0;

  constructor(
    readonly shape: KvShape,
    budgetBytes: number,
    blockSize = 16,
    readonly saq: SaqOptions | null = null,
  ) {
    this.blockSize = blockSize;
    this.rowWidth = shape.kvHeads * shape.headDim;
    this.bytesPerToken = shape.layers * 2 * this.rowWidth * 4;
    this.blockBytes = this.bytesPerToken * blockSize;
    this.budgetBytes = budgetBytes;
    this.numBlocks = Math.floor(budgetBytes / this.blockBytes);
    if (this.numBlocks < 1) throw new Error(`KV budget ${budgetBytes} bytes holds no block of ${blockSize} tokens`);
    if (saq) {
      if (saq.step % blockSize !== 0) throw new Error(`SAQ step ${saq.step} must be a multiple of the block size ${blockSize}`);
      if (this.rowWidth % saq.valueGroup !== 0) throw new Error(`SAQ value group ${saq.valueGroup} must divide ${this.rowWidth}`);
      if (saq.bits.length === 0) throw new Error('SAQ needs at least one bit width');
    }
  }

  private usedBlocks(): number {
    return this.pool.length - this.free.length;
  }

  /** Bytes the budget still allows. */
  private bytesFree(): number {
    return this.budgetBytes - this.usedBlocks() * this.blockBytes - this.quantBytesInUse;
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** fp32 blocks that could still be allocated. */
  freeBlocks(): number {
    return Math.floor(this.bytesFree() / this.blockBytes);
  }

  /** Whether `extra` more tokens fit for this sequence (or a new one) right now, at fp32 (SAQ
   *  only ever shrinks what is already held). */
  canGrow(seqId: number, extra: number): boolean {
    const e = this.seqs.get(seqId);
    const fp = e ? e.length - e.quantized : 0;
    const have = e ? e.blocks.length : 0;
    return this.blocksFor(fp + extra) - have <= this.freeBlocks();
  }

  length(seqId: number): number {
    return this.seqs.get(seqId)?.length ?? 0;
  }

  private allocBlock(): number {
    const id = this.free.pop();
    if (id !== undefined) return id;
    this.pool.push(new Float32Array(this.shape.layers * 2 * this.blockSize * this.rowWidth));
    return this.pool.length - 1;
  }

  /** Offset of (layer, K=0/V=1, row in block) inside a block buffer. */
  private off(layer: number, kv: 0 | 1, row: number): number {
    return ((layer * 2 + kv) * this.blockSize + row) * this.rowWidth;
  }

  /** Appends rows to a sequence. `src*[l]` is a [*, rowWidth] array; `rows` lists the row indices
   *  (in order) to copy from it. Returns false (and changes nothing) when the budget is exhausted. */
  append(seqId: number, srcKeys: Float32Array[], srcValues: Float32Array[], rows: ArrayLike<number>): boolean {
    if (!this.canGrow(seqId, rows.length)) return false;
    let e = this.seqs.get(seqId);
    if (!e) {
      e = { blocks: [], quantized: 0, length: 0, segments: [] };
      this.seqs.set(seqId, e);
    }
    const fp = e.length - e.quantized;
    const need = this.blocksFor(fp + rows.length) - e.blocks.length;
    for (let i = 0; i < need; i++) e.blocks.push(this.allocBlock());
    const W = this.rowWidth;
    for (let r = 0; r < rows.length; r++) {
      const pos = fp + r;
      const block = this.pool[e.blocks[(pos / this.blockSize) | 0]];
      const inBlock = pos % this.blockSize;
      const src = rows[r] * W;
      for (let l = 0; l < this.shape.layers; l++) {
        block.set(srcKeys[l].subarray(src, src + W), this.off(l, 0, inBlock));
        block.set(srcValues[l].subarray(src, src + W), this.off(l, 1, inBlock));
      }
    }
    e.length += rows.length;
    if (this.saq) this.staircase(e);
    return true;
  }

  /** Commit-time SAQ: move full stairs out of the fp32 window and step older stairs down. */
  private staircase(e: SeqEntry): void {
    const { window, step, bits, valueGroup } = this.saq!;
    const W = this.rowWidth;
    while (e.length - e.quantized >= window + step) {
      const nBlocks = step / this.blockSize;
      const tmpK = new Float32Array(step * W);
      const tmpV = new Float32Array(step * W);
      const keys: QuantBlock[] = [];
      const values: QuantBlock[] = [];
      for (let l = 0; l < this.shape.layers; l++) {
        for (let b = 0; b < nBlocks; b++) {
          const block = this.pool[e.blocks[b]];
          tmpK.set(block.subarray(this.off(l, 0, 0), this.off(l, 0, this.blockSize)), b * this.blockSize * W);
          tmpV.set(block.subarray(this.off(l, 1, 0), this.off(l, 1, this.blockSize)), b * this.blockSize * W);
        }
        keys.push(quantize(tmpK, 0, step, W, bits[0], 'channel', step));
        values.push(quantize(tmpV, 0, step, W, bits[0], 'token', valueGroup));
      }
      for (const b of e.blocks.splice(0, nBlocks)) this.free.push(b);
      const seg: Segment = { tokens: step, bits: bits[0], keys, values };
      e.segments.push(seg);
      this.quantBytesInUse += segBytes(seg);
      e.quantized += step;
      // every older stair steps down one level (newest is last)
      const n = e.segments.length;
      for (let i = 0; i < n - 1; i++) {
        const s = e.segments[i];
        const want = bits[Math.min(n - 1 - i, bits.length - 1)];
        if (s.bits === want) continue;
        this.quantBytesInUse -= segBytes(s);
        s.keys = s.keys.map((q) => requantize(q, want));
        s.values = s.values.map((q) => requantize(q, want));
        s.bits = want;
        this.quantBytesInUse += segBytes(s);
      }
    }
  }

  /** Rollback: keep the first `length` tokens, return whole unused blocks to the pool. Only the
   *  fp32 window can be rolled back (quantized stairs hold committed, verified tokens only). */
  truncate(seqId: number, length: number): void {
    const e = this.seqs.get(seqId);
    if (!e) return;
    if (length > e.length) throw new Error(`truncate to ${length} beyond length ${e.length}`);
    if (length < e.quantized) throw new Error(`cannot roll back into quantized KV (${length} < ${e.quantized})`);
    e.length = length;
    const keep = this.blocksFor(length - e.quantized);
    while (e.blocks.length > keep) this.free.push(e.blocks.pop()!);
  }

  release(seqId: number): void {
    const e = this.seqs.get(seqId);
    if (!e) return;
    for (const b of e.blocks) this.free.push(b);
    for (const s of e.segments) this.quantBytesInUse -= segBytes(s);
    this.seqs.delete(seqId);
  }

  /** Copies a sequence's rows (dequantizing stairs) into a batch buffer laid out
   *  [batch, past, rowWidth] at `row`, or, with `headMajor`, [batch, kvHeads, past, headDim]. */
  gather(seqId: number, outKeys: Float32Array[], outValues: Float32Array[], row: number, past: number, headMajor = false): void {
    const e = this.seqs.get(seqId);
    if (!e) return;
    const W = this.rowWidth;
    if (!headMajor) {
      for (let l = 0; l < this.shape.layers; l++) this.gatherLayer(e, l, outKeys[l], outValues[l], row * past * W);
      return;
    }
    // head-major (Optimum layout): through a token-major scratch copy of this sequence's layer
    const tk = new Float32Array(e.length * W);
    const tv = new Float32Array(e.length * W);
    const { kvHeads: H, headDim: D } = this.shape;
    for (let l = 0; l < this.shape.layers; l++) {
      this.gatherLayer(e, l, tk, tv, 0);
      for (let pos = 0; pos < e.length; pos++)
        for (let h = 0; h < H; h++) {
          const dst = ((row * H + h) * past + pos) * D;
          outKeys[l].set(tk.subarray(pos * W + h * D, pos * W + (h + 1) * D), dst);
          outValues[l].set(tv.subarray(pos * W + h * D, pos * W + (h + 1) * D), dst);
        }
    }
  }

  /** Token-major gather of target layers [from, to) only: out[i] receives layer from + i, laid out
   *  [batch, past, rowWidth] at `row`. Returns the sequence's length. */
  gatherLayers(seqId: number, from: number, to: number, outKeys: Float32Array[], outValues: Float32Array[], row: number, past: number): number {
    const e = this.seqs.get(seqId);
    if (!e) return 0;
    for (let l = from; l < to; l++) this.gatherLayer(e, l, outKeys[l - from], outValues[l - from], row * past * this.rowWidth);
    return e.length;
  }

  /** Layer `l` of a sequence, token-major [length, rowWidth], written at `dst`. */
  private gatherLayer(e: SeqEntry, l: number, outK: Float32Array, outV: Float32Array, dst: number): void {
    const W = this.rowWidth;
    const bs = this.blockSize;
    const fp = e.length - e.quantized;
    let pos = 0;
    for (const s of e.segments) {
      dequantize(s.keys[l], outK, dst + pos * W);
      dequantize(s.values[l], outV, dst + pos * W);
      pos += s.tokens;
    }
    for (let b = 0; b < e.blocks.length; b++) {
      const n = Math.min(bs, fp - b * bs);
      if (n <= 0) break;
      const block = this.pool[e.blocks[b]];
      outK.set(block.subarray(this.off(l, 0, 0), this.off(l, 0, n)), dst + pos * W);
      outV.set(block.subarray(this.off(l, 1, 0), this.off(l, 1, n)), dst + pos * W);
      pos += n;
    }
  }

  stats(): KvStats {
    let tokens = 0;
    const bytesByTier: Record<string, number> = { fp32: 0 };
    for (const e of this.seqs.values()) {
      tokens += e.length;
      bytesByTier.fp32 += e.blocks.length * this.blockBytes;
      for (const s of e.segments) bytesByTier[`q${s.bits}`] = (bytesByTier[`q${s.bits}`] ?? 0) + segBytes(s);
    }
    return {
      blockSize: this.blockSize,
      blocksTotal: this.numBlocks,
      blocksFree: this.freeBlocks(),
      tokens,
      bytesTotal: this.budgetBytes,
      bytesInUse: this.usedBlocks() * this.blockBytes + this.quantBytesInUse,
      bytesByTier,
      sequences: this.seqs.size,
    };
  }
}

function segBytes(s: Segment): number {
  let n = 0;
  for (const q of s.keys) n += quantBytes(q);
  for (const q of s.values) n += quantBytes(q);
  return n;
}
