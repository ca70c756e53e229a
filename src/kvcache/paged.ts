// Paged KV cache: fixed-size fp32 blocks allocated on demand within a byte budget, a block table per
// sequence, and optionally the SAQ staircase below the fp32 window. Only committed (verified) rows
// are ever written here: draft rows live in the forward's output until the verifier has chosen which
// to keep, so no unverified row can reach a quantized tier. Rollback is a length change that frees
// whole blocks.
//
// Row layout in a block, per layer and K/V: [kvHeads, blockSize, headDim], head-major like the
// graphs' past input ([batch, kvHeads, past, headDim]), so a read for a forward copies one run per
// head and block; the graphs output new rows token-major ([batch, tokens, kvHeads, headDim]) and
// `append` splits them by head.
//
// SAQ (staircase adaptive quantization, docs/methods.md §7.2 on KIVI's scheme; options in saq.ts):
// the newest `window` tokens stay fp32. Whenever the fp32 region holds window + step tokens, its oldest `step` tokens
// become a quantized segment at the top stair (keys per channel, values per token) and every older
// segment steps down one stair until the floor. Each layer's keys and values may have stairs of
// their own (`layers`); otherwise `bits`. Demotions happen only here, at commit time.
//
// Admission reserves blocks (`reserve`): they count as in use until the sequence allocates them
// or is released, so two admissions never count the same free blocks.
import { copyToHeadMajor } from '../model/onnx-layout.ts';
import { dequantize, quantize, requantize, type QuantBlock } from './quant.ts';
import { addTierBytes, segBytes, stairBits, tokenTier, validateSaq, type SaqOptions, type Segment } from './saq.ts';
import type { KvStats, KvUsage } from './stats.ts';

export { describeSaq, SAQ_DEFAULTS, type SaqOptions } from './saq.ts';
export type { KvStats, KvUsage } from './stats.ts';
/** The graphs' past layout (model/onnx-layout.ts), for tools that build a past by hand. */
export { copyToHeadMajor, headMajor } from '../model/onnx-layout.ts';

export interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
}

interface SeqEntry {
  /** fp32 blocks holding tokens [quantized, length). */
  blocks: number[];
  /** Tokens held in quantized segments (they precede the fp32 region). */
  quantized: number;
  length: number;
  /** Oldest first. */
  segments: Segment[];
  /** Bytes of `segments`. */
  quantBytes: number;
  /** Blocks reserved for this sequence and not yet allocated; each block it allocates uses one. */
  reserved: number;
  peakBytes: number;
  /** Changes when the sequence is created or truncated (see `generation`). */
  gen: number;
  /** Commit-time rewrites of committed rows (SAQ demotions), oldest first: the row range each
   *  changed (one a `step` tokens: 32 at most for a 1,024-token context with the defaults). */
  rewritten: [number, number][];
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
  /** [layers, 2, kvHeads, blockSize, headDim] per allocated block */
  private readonly pool: Float32Array[] = [];
  private readonly free: number[] = [];
  private readonly seqs = new Map<number, SeqEntry>();
  private quantBytesInUse = 0;
  private reservedBlocks = 0;
  private gens = 0;

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
    if (saq) validateSaq(saq, shape, blockSize);
  }

  private usedBlocks(): number {
    return this.pool.length - this.free.length;
  }

  /** Bytes the budget still allows, reservations deducted. */
  private bytesFree(): number {
    return this.budgetBytes - (this.usedBlocks() + this.reservedBlocks) * this.blockBytes - this.quantBytesInUse;
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** fp32 blocks that could still be allocated by a sequence without a reservation. */
  freeBlocks(): number {
    return Math.max(0, Math.floor(this.bytesFree() / this.blockBytes));
  }

  /** New blocks `extra` more tokens would take for this sequence, at fp32 (SAQ only ever shrinks
   *  what is already held), beyond its reservation. */
  private shortfall(e: SeqEntry | undefined, extra: number): number {
    if (!e) return this.blocksFor(extra);
    return Math.max(0, this.blocksFor(e.length - e.quantized + extra) - e.blocks.length - e.reserved);
  }

  /** Whether `extra` more tokens fit for this sequence (or a new one) right now, its reservation
   *  included. */
  canGrow(seqId: number, extra: number): boolean {
    return this.shortfall(this.seqs.get(seqId), extra) <= this.freeBlocks();
  }

  /**
   * Admission: promises the sequence room for `extra` more tokens at fp32 (prompt + lookahead), so
   * that no later admission can count the same free blocks. The reserved blocks count as in use;
   * blocks the sequence allocates are taken from its reservation first; `release` returns what is
   * left. Reserving again tops the reservation up to cover `extra` from the current length (never
   * shrinks it). Returns false, changing nothing, when the budget cannot cover it.
   */
  reserve(seqId: number, extra: number): boolean {
    const e = this.seqs.get(seqId);
    const more = this.shortfall(e, extra);
    if (more > this.freeBlocks()) return false;
    if (more === 0) return true;
    this.entry(seqId).reserved += more;
    this.reservedBlocks += more;
    return true;
  }

  private entry(seqId: number): SeqEntry {
    let e = this.seqs.get(seqId);
    if (!e) {
      e = { blocks: [], quantized: 0, length: 0, segments: [], quantBytes: 0, reserved: 0, peakBytes: 0, gen: ++this.gens, rewritten: [] };
      this.seqs.set(seqId, e);
    }
    return e;
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

  /** Offset of (layer, K=0/V=1, kv head, row in block) inside a block buffer: each head's rows of
   *  a block are contiguous, so reads into the graphs' head-major past copy whole runs. */
  private off(layer: number, kv: 0 | 1, head: number, row: number): number {
    return (((layer * 2 + kv) * this.shape.kvHeads + head) * this.blockSize + row) * this.shape.headDim;
  }

  /** Appends rows to a sequence. `src*[l]` is a [*, rowWidth] array; `rows` lists the row indices
   *  (in order) to copy from it. Returns false (and changes nothing) when the budget is exhausted. */
  append(seqId: number, srcKeys: Float32Array[], srcValues: Float32Array[], rows: ArrayLike<number>): boolean {
    if (!this.canGrow(seqId, rows.length)) return false;
    const e = this.entry(seqId);
    const fp = e.length - e.quantized;
    const need = this.blocksFor(fp + rows.length) - e.blocks.length;
    for (let i = 0; i < need; i++) e.blocks.push(this.allocBlock());
    if (need > 0) {
      const fromReserve = Math.min(need, e.reserved);
      e.reserved -= fromReserve;
      this.reservedBlocks -= fromReserve;
      e.peakBytes = Math.max(e.peakBytes, e.blocks.length * this.blockBytes + e.quantBytes);
    }
    const W = this.rowWidth;
    const { kvHeads: H, headDim: D } = this.shape;
    for (let r = 0; r < rows.length; r++) {
      const pos = fp + r;
      const block = this.pool[e.blocks[(pos / this.blockSize) | 0]];
      const inBlock = pos % this.blockSize;
      for (let l = 0; l < this.shape.layers; l++) {
        // a block's layer is a head-major past of blockSize rows: the row goes to each head's run
        copyToHeadMajor(srcKeys[l], rows[r] * W, 1, block, this.off(l, 0, 0, 0), this.blockSize, inBlock, H, D);
        copyToHeadMajor(srcValues[l], rows[r] * W, 1, block, this.off(l, 1, 0, 0), this.blockSize, inBlock, H, D);
      }
    }
    e.length += rows.length;
    if (this.saq) this.staircase(e);
    return true;
  }

  /** Commit-time SAQ: move full stairs out of the fp32 window and step older stairs down. */
  private staircase(e: SeqEntry): void {
    const { window, step, valueGroup } = this.saq!;
    while (e.length - e.quantized >= window + step) {
      const nBlocks = step / this.blockSize;
      const { kvHeads: H, headDim: D } = this.shape;
      const tmpK = new Float32Array(step * D);
      const tmpV = new Float32Array(step * D);
      const keys: QuantBlock[] = [];
      const values: QuantBlock[] = [];
      for (let l = 0; l < this.shape.layers; l++) {
        for (let h = 0; h < H; h++) {
          // the stair's rows of one head, token-major [step, headDim]: one run per block
          for (let b = 0; b < nBlocks; b++) {
            const block = this.pool[e.blocks[b]];
            const k = this.off(l, 0, h, 0);
            const v = this.off(l, 1, h, 0);
            tmpK.set(block.subarray(k, k + this.blockSize * D), b * this.blockSize * D);
            tmpV.set(block.subarray(v, v + this.blockSize * D), b * this.blockSize * D);
          }
          keys.push(quantize(tmpK, 0, step, D, stairBits(this.saq!, l, 0, 0), 'channel', this.saq!.keyGroup ?? step));
          values.push(quantize(tmpV, 0, step, D, stairBits(this.saq!, l, 1, 0), 'token', valueGroup));
        }
      }
      for (const b of e.blocks.splice(0, nBlocks)) this.free.push(b);
      const seg: Segment = { tokens: step, keys, values };
      e.segments.push(seg);
      this.addQuant(e, segBytes(seg));
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
        s.keys = s.keys.map((q, j) => down(q, stairBits(this.saq!, (j / H) | 0, 0, age)));
        s.values = s.values.map((q, j) => down(q, stairBits(this.saq!, (j / H) | 0, 1, age)));
        this.addQuant(e, segBytes(s) - before);
        if (changed) changedFrom = start;
      }
      e.rewritten.push([changedFrom, e.quantized]);
    }
  }

  /**
   * How many more tokens the sequence can commit before the cache rewrites committed rows (a SAQ
   * demotion); Infinity for an fp32 cache. A forward reads the cache as it is before the step:
   * verifying drafts beyond this would score them against rows that plain decoding would already
   * see demoted, so speculative decoding caps its drafts here to stay identical to plain decoding.
   */
  tokensUntilRewrite(seqId: number): number {
    if (!this.saq) return Infinity;
    const e = this.seqs.get(seqId);
    const fp = e ? e.length - e.quantized : 0;
    return this.saq.window + this.saq.step - fp;
  }

  /** The rewrites of committed rows since `since` (a value `rewrites(seqId)` returned): row ranges
   *  whose contents changed, oldest first. */
  rewrittenSince(seqId: number, since: number): readonly [number, number][] {
    const e = this.seqs.get(seqId);
    return e ? e.rewritten.slice(since) : [];
  }

  /** Count of commit-time rewrites of the sequence's rows so far (see `rewrittenSince`). */
  rewrites(seqId: number): number {
    return this.seqs.get(seqId)?.rewritten.length ?? 0;
  }

  private addQuant(e: SeqEntry, bytes: number): void {
    e.quantBytes += bytes;
    this.quantBytesInUse += bytes;
  }

  /** Rollback: keep the first `length` tokens, return whole unused blocks to the pool. Only the
   *  fp32 window can be rolled back (quantized stairs hold committed, verified tokens only). */
  truncate(seqId: number, length: number): void {
    const e = this.seqs.get(seqId);
    if (!e) return;
    if (length > e.length) throw new Error(`truncate to ${length} beyond length ${e.length}`);
    if (length < e.quantized) throw new Error(`cannot roll back into quantized KV (${length} < ${e.quantized})`);
    e.length = length;
    e.gen = ++this.gens;
    const keep = this.blocksFor(length - e.quantized);
    while (e.blocks.length > keep) this.free.push(e.blocks.pop()!);
  }

  /** Frees everything the sequence holds or has reserved (finish, cancel, failure); returns its
   *  usage just before, or null when it held nothing. */
  release(seqId: number): KvUsage | null {
    const e = this.seqs.get(seqId);
    if (!e) return null;
    const u = this.usageOf(e);
    for (const b of e.blocks) this.free.push(b);
    this.quantBytesInUse -= e.quantBytes;
    this.reservedBlocks -= e.reserved;
    this.seqs.delete(seqId);
    return u;
  }

  /** One sequence's tokens and bytes by tier, or null when it holds nothing. */
  usage(seqId: number): KvUsage | null {
    const e = this.seqs.get(seqId);
    return e ? this.usageOf(e) : null;
  }

  private usageOf(e: SeqEntry): KvUsage {
    const fp = e.length - e.quantized;
    const tokensByTier: Record<string, number> = { fp32: fp };
    const bytesByTier: Record<string, number> = { fp32: e.blocks.length * this.blockBytes, reserved: e.reserved * this.blockBytes };
    for (const s of e.segments) {
      const tier = tokenTier(s);
      tokensByTier[tier] = (tokensByTier[tier] ?? 0) + s.tokens;
      addTierBytes(bytesByTier, s);
    }
    const bytes = bytesByTier.fp32 + bytesByTier.reserved + e.quantBytes;
    return { tokensByTier, bytesByTier, tokens: e.length, bytes, peakBytes: e.peakBytes };
  }

  /** Copies a sequence's rows (dequantizing stairs) of every layer into a dense past at batch row
   *  `row` (head-major, see `gatherLayers`). */
  gather(seqId: number, outKeys: Float32Array[], outValues: Float32Array[], row: number, past: number): void {
    this.gatherLayers(seqId, 0, this.shape.layers, outKeys, outValues, row, past);
  }

  /** Identity of a sequence's committed rows, 0 when it holds none. While it stays the same, rows
   *  already read are unchanged except where `rewrittenSince` says (SAQ demotions); it changes when
   *  the sequence is created anew or truncated. */
  generation(seqId: number): number {
    return this.seqs.get(seqId)?.gen ?? 0;
  }

  /** Committed rows never change once written (no staircase quantization). */
  get rowsStable(): boolean {
    return this.saq === null;
  }

  /** Copies rows [from, to) of target layers [layerFrom, layerTo) into out[i] (layer layerFrom +
   *  i), a dense past laid out head-major like `gatherLayers`, at batch row `row` with past
   *  dimension `past` (row `pos` lands at position `pos`). A quantized stair that the range touches
   *  is dequantized whole, so rows of it outside the range are written too (with their current
   *  values). */
  gatherRange(seqId: number, layerFrom: number, layerTo: number, from: number, to: number, outKeys: Float32Array[], outValues: Float32Array[], row: number, past: number): void {
    const e = this.seqs.get(seqId);
    if (!e || from >= to) return;
    if (to > e.length) throw new Error(`gatherRange to ${to} beyond length ${e.length}`);
    const { kvHeads: H, headDim: D } = this.shape;
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
    const bs = this.blockSize;
    for (let pos = Math.max(from, e.quantized); pos < to; ) {
      const fp = pos - e.quantized;
      const inBlock = fp % bs;
      const n = Math.min(bs - inBlock, to - pos);
      const block = this.pool[e.blocks[(fp / bs) | 0]];
      for (let l = layerFrom; l < layerTo; l++) {
        this.blockRows(block, l, inBlock, n, outKeys[l - layerFrom], outValues[l - layerFrom], base, past, pos);
      }
      pos += n;
    }
  }

  /** Copies all rows of target layers [from, to) (dequantizing stairs) into out[i] (layer from +
   *  i), a dense past laid out head-major as the ONNX graphs take it, [batch, kvHeads, past,
   *  headDim], at batch row `row`: row `pos` of head h is at ((row * kvHeads + h) * past + pos) *
   *  headDim. Returns the sequence's length. */
  gatherLayers(seqId: number, from: number, to: number, outKeys: Float32Array[], outValues: Float32Array[], row: number, past: number): number {
    const e = this.seqs.get(seqId);
    if (!e) return 0;
    if (e.length > past) throw new Error(`gather of ${e.length} rows into a past of ${past}`);
    this.gatherRange(seqId, from, to, 0, e.length, outKeys, outValues, row, past);
    return e.length;
  }

  /** Rows [from, from + n) of layer `l` of a block, each head's run in one copy, to positions
   *  pos.. of a head-major past whose batch row starts at `base`. */
  private blockRows(block: Float32Array, l: number, from: number, n: number, outK: Float32Array, outV: Float32Array, base: number, past: number, pos: number): void {
    const { kvHeads: H, headDim: D } = this.shape;
    for (let h = 0; h < H; h++) {
      const o = base + (h * past + pos) * D;
      const k = this.off(l, 0, h, from);
      const v = this.off(l, 1, h, from);
      outK.set(block.subarray(k, k + n * D), o);
      outV.set(block.subarray(v, v + n * D), o);
    }
  }

  stats(): KvStats {
    let tokens = 0;
    const bytesByTier: Record<string, number> = { fp32: 0, reserved: this.reservedBlocks * this.blockBytes };
    for (const e of this.seqs.values()) {
      tokens += e.length;
      bytesByTier.fp32 += e.blocks.length * this.blockBytes;
      for (const s of e.segments) addTierBytes(bytesByTier, s);
    }
    return {
      blockSize: this.blockSize,
      blocksTotal: this.numBlocks,
      blocksFree: this.freeBlocks(),
      tokens,
      bytesTotal: this.budgetBytes,
      bytesInUse: (this.usedBlocks() + this.reservedBlocks) * this.blockBytes + this.quantBytesInUse,
      bytesByTier,
      blocksReserved: this.reservedBlocks,
      sequences: this.seqs.size,
    };
  }
}
