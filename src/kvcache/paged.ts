// Paged KV cache: fixed-size blocks from a pool sized by a byte budget, a block table per
// sequence. Only committed (verified) rows are ever written here: draft rows live in the forward's
// output until the verifier has chosen which to keep. Rollback is a length change that frees whole
// blocks.
//
// Row layout inside a block, per layer and per K/V: [blockSize, kvHeads * headDim], token-major,
// matching the speculative ONNX layout [batch, past, kvHeads, headDim].

export interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export interface KvStats {
  blockSize: number;
  blocksTotal: number;
  blocksFree: number;
  /** Committed tokens held, over all sequences. */
  tokens: number;
  bytesTotal: number;
  bytesInUse: number;
  sequences: number;
}

interface SeqEntry {
  blocks: number[];
  length: number;
}

export class PagedKvCache {
  readonly blockSize: number;
  readonly rowWidth: number; // kvHeads * headDim
  readonly numBlocks: number;
  /** Bytes one token occupies over all layers, K and V. */
  readonly bytesPerToken: number;
  // [numBlocks * blockSize, rowWidth] per layer
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];
  private readonly free: number[];
  private readonly seqs = new Map<number, SeqEntry>();

  constructor(readonly shape: KvShape, budgetBytes: number, blockSize = 16) {
    this.blockSize = blockSize;
    this.rowWidth = shape.kvHeads * shape.headDim;
    this.bytesPerToken = shape.layers * 2 * this.rowWidth * 4;
    this.numBlocks = Math.floor(budgetBytes / (this.bytesPerToken * blockSize));
    if (this.numBlocks < 1) throw new Error(`KV budget ${budgetBytes} bytes holds no block of ${blockSize} tokens`);
    const floats = this.numBlocks * blockSize * this.rowWidth;
    this.keys = Array.from({ length: shape.layers }, () => new Float32Array(floats));
    this.values = Array.from({ length: shape.layers }, () => new Float32Array(floats));
    // pop() hands out low block ids first
    this.free = Array.from({ length: this.numBlocks }, (_, i) => this.numBlocks - 1 - i);
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** Whether `extra` more tokens fit for this sequence (or a new one) right now. */
  canGrow(seqId: number, extra: number): boolean {
    const e = this.seqs.get(seqId);
    const have = e ? e.blocks.length : 0;
    const len = e ? e.length : 0;
    return this.blocksFor(len + extra) - have <= this.free.length;
  }

  freeBlocks(): number {
    return this.free.length;
  }

  length(seqId: number): number {
    return this.seqs.get(seqId)?.length ?? 0;
  }

  has(seqId: number): boolean {
    return this.seqs.has(seqId);
  }

  /** Appends rows to a sequence. `src*[l]` is a [*, rowWidth] array; `rows` lists the row indices
   *  (in order) to copy from it. Returns false (and changes nothing) when the pool is exhausted. */
  append(seqId: number, srcKeys: Float32Array[], srcValues: Float32Array[], rows: ArrayLike<number>): boolean {
    let e = this.seqs.get(seqId);
    if (!e) {
      e = { blocks: [], length: 0 };
      this.seqs.set(seqId, e);
    }
    const need = this.blocksFor(e.length + rows.length) - e.blocks.length;
    if (need > this.free.length) return false;
    for (let i = 0; i < need; i++) e.blocks.push(this.free.pop()!);
    const W = this.rowWidth;
    for (let r = 0; r < rows.length; r++) {
      const pos = e.length + r;
      const dst = (e.blocks[(pos / this.blockSize) | 0] * this.blockSize + (pos % this.blockSize)) * W;
      const src = rows[r] * W;
      for (let l = 0; l < this.shape.layers; l++) {
        this.keys[l].set(srcKeys[l].subarray(src, src + W), dst);
        this.values[l].set(srcValues[l].subarray(src, src + W), dst);
      }
    }
    e.length += rows.length;
    return true;
  }

  /** Rollback: keep the first `length` tokens, return whole unused blocks to the pool. */
  truncate(seqId: number, length: number): void {
    const e = this.seqs.get(seqId);
    if (!e) return;
    if (length > e.length) throw new Error(`truncate to ${length} beyond length ${e.length}`);
    e.length = length;
    const keep = this.blocksFor(length);
    while (e.blocks.length > keep) this.free.push(e.blocks.pop()!);
  }

  release(seqId: number): void {
    const e = this.seqs.get(seqId);
    if (!e) return;
    for (const b of e.blocks) this.free.push(b);
    this.seqs.delete(seqId);
  }

  /** Copies a sequence's rows into a batch buffer laid out [batch, past, rowWidth] at `row`, or,
   *  with `headMajor`, as [batch, kvHeads, past, headDim] (the Optimum layout). */
  gather(seqId: number, outKeys: Float32Array[], outValues: Float32Array[], row: number, past: number, headMajor = false): void {
    const e = this.seqs.get(seqId);
    if (!e) return;
    const W = this.rowWidth;
    const bs = this.blockSize;
    for (let l = 0; l < this.shape.layers; l++) {
      const K = this.keys[l], V = this.values[l], oK = outKeys[l], oV = outValues[l];
      if (!headMajor) {
        let pos = 0;
        for (const b of e.blocks) {
          const n = Math.min(bs, e.length - pos);
          if (n <= 0) break;
          const src = b * bs * W;
          const dst = (row * past + pos) * W;
          oK.set(K.subarray(src, src + n * W), dst);
          oV.set(V.subarray(src, src + n * W), dst);
          pos += n;
        }
      } else {
        const { kvHeads: H, headDim: D } = this.shape;
        for (let pos = 0; pos < e.length; pos++) {
          const src = (e.blocks[(pos / bs) | 0] * bs + (pos % bs)) * W;
          for (let h = 0; h < H; h++) {
            const dst = ((row * H + h) * past + pos) * D;
            oK.set(K.subarray(src + h * D, src + (h + 1) * D), dst);
            oV.set(V.subarray(src + h * D, src + (h + 1) * D), dst);
          }
        }
      }
    }
  }

  stats(): KvStats {
    let tokens = 0;
    for (const e of this.seqs.values()) tokens += e.length;
    const used = this.numBlocks - this.free.length;
    const bytesPerBlock = this.bytesPerToken * this.blockSize;
    return {
      blockSize: this.blockSize,
      blocksTotal: this.numBlocks,
      blocksFree: this.free.length,
      tokens,
      bytesTotal: this.numBlocks * bytesPerBlock,
      bytesInUse: used * bytesPerBlock,
      sequences: this.seqs.size,
    };
  }
}
