// Paged KV cache: fixed-size fp32 blocks allocated on demand within a byte budget, a block table per
// sequence, and optionally the SAQ staircase below the fp32 window. Only committed (verified) rows
// are ever written here: draft rows live in the forward's output until the verifier has chosen which
// to keep, so no unverified row can reach a quantized tier. Rollback is a length change that frees
// whole blocks.
//
// This class is the API the worker uses; the parts are in their own files: the budget, the blocks
// and the reservations (block-pool.ts), a sequence's entry (sequence.ts), copies between blocks and
// the graphs' layouts (block-copy.ts), the SAQ staircase (staircase.ts, its options in saq.ts, the
// quantization in quant.ts) and the reports (stats.ts).
//
// Admission reserves blocks (`reserve`): they count as in use until the sequence allocates them
// or is released, so two admissions never count the same free blocks.
import { readRows, writeRows } from './block-copy.ts';
import { BlockPool, type KvShape } from './block-pool.ts';
import { validateSaq, type SaqOptions } from './saq.ts';
import { newSeqEntry, type SeqEntry } from './sequence.ts';
import { descendStairs } from './staircase.ts';
import { cacheStats, seqUsage, type KvStats, type KvUsage } from './stats.ts';

export type { KvShape } from './block-pool.ts';
export { describeSaq, SAQ_DEFAULTS, type SaqOptions } from './saq.ts';
export type { KvStats, KvUsage } from './stats.ts';
/** The graphs' past layout (model/onnx-layout.ts), for tools that build a past by hand. */
export { copyToHeadMajor, headMajor } from '../model/onnx-layout.ts';

export class PagedKvCache {
  readonly blockSize: number;
  readonly rowWidth: number; // kvHeads * headDim
  /** Most fp32 blocks the budget allows. */
  readonly numBlocks: number;
  /** fp32 bytes one token occupies over all layers, K and V. */
  readonly bytesPerToken: number;
  readonly budgetBytes: number;
  private readonly pool: BlockPool;
  private readonly seqs = new Map<number, SeqEntry>();
  private gens = 0;

  constructor(
    readonly shape: KvShape,
    budgetBytes: number,
    blockSize = 16,
    readonly saq: SaqOptions | null = null,
  ) {
    this.pool = new BlockPool(shape, budgetBytes, blockSize);
    this.blockSize = blockSize;
    this.rowWidth = shape.kvHeads * shape.headDim;
    this.bytesPerToken = this.pool.bytesPerToken;
    this.budgetBytes = budgetBytes;
    this.numBlocks = this.pool.numBlocks;
    if (saq) validateSaq(saq, shape, blockSize);
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** fp32 blocks that could still be allocated by a sequence without a reservation. */
  freeBlocks(): number {
    return this.pool.freeBlocks();
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
    this.pool.reserve(this.entry(seqId), more);
    return true;
  }

  private entry(seqId: number): SeqEntry {
    let e = this.seqs.get(seqId);
    if (!e) {
      e = newSeqEntry(++this.gens);
      this.seqs.set(seqId, e);
    }
    return e;
  }

  length(seqId: number): number {
    return this.seqs.get(seqId)?.length ?? 0;
  }

  /** Appends rows to a sequence. `src*[l]` is a [*, rowWidth] array; `rows` lists the row indices
   *  (in order) to copy from it. Returns false (and changes nothing) when the budget is exhausted.
   *  With SAQ, full stairs then leave the fp32 window (staircase.ts): this is the only place
   *  committed rows are rewritten. */
  append(seqId: number, srcKeys: Float32Array[], srcValues: Float32Array[], rows: ArrayLike<number>): boolean {
    if (!this.canGrow(seqId, rows.length)) return false;
    const e = this.entry(seqId);
    const fp = e.length - e.quantized;
    const need = this.blocksFor(fp + rows.length) - e.blocks.length;
    if (need > 0) {
      this.pool.grow(e, need);
      e.peakBytes = Math.max(e.peakBytes, e.blocks.length * this.pool.blockBytes + e.quantBytes);
    }
    writeRows(this.pool, e, fp, srcKeys, srcValues, rows);
    e.length += rows.length;
    if (this.saq) descendStairs(e, this.pool, this.saq);
    return true;
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

  /** Rollback: keep the first `length` tokens, return whole unused blocks to the pool. Only the
   *  fp32 window can be rolled back (quantized stairs hold committed, verified tokens only). */
  truncate(seqId: number, length: number): void {
    const e = this.seqs.get(seqId);
    if (!e) return;
    if (length > e.length) throw new Error(`truncate to ${length} beyond length ${e.length}`);
    if (length < e.quantized) throw new Error(`cannot roll back into quantized KV (${length} < ${e.quantized})`);
    e.length = length;
    e.gen = ++this.gens;
    this.pool.truncate(e, this.blocksFor(length - e.quantized));
  }

  /** Frees everything the sequence holds or has reserved (finish, cancel, failure); returns its
   *  usage just before, or null when it held nothing. */
  release(seqId: number): KvUsage | null {
    const e = this.seqs.get(seqId);
    if (!e) return null;
    const u = seqUsage(e, this.pool.blockBytes);
    this.pool.release(e);
    this.seqs.delete(seqId);
    return u;
  }

  /** One sequence's tokens and bytes by tier, or null when it holds nothing. */
  usage(seqId: number): KvUsage | null {
    const e = this.seqs.get(seqId);
    return e ? seqUsage(e, this.pool.blockBytes) : null;
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
    readRows(this.pool, e, layerFrom, layerTo, from, to, outKeys, outValues, row, past);
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

  stats(): KvStats {
    return cacheStats(this.pool, this.seqs);
  }
}
