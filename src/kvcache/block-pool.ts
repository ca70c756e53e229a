// The KV cache's byte budget and the fp32 blocks allocated within it. Three things draw on the
// budget: allocated blocks, blocks reserved at admission and not yet allocated, and the bytes of
// quantized stairs. They are counted here, and only changed through the methods below, so every
// check against the budget (`bytesFree`, `freeBlocks`) and every report of it sees the same three
// terms and no admission can count blocks another one was promised. PagedKvCache (paged.ts) keeps
// the per-sequence block tables and decides when to call these.
//
// Row layout in a block, per layer and K/V: [kvHeads, blockSize, headDim], head-major like the
// graphs' past input ([batch, kvHeads, past, headDim]), so a read for a forward copies one run per
// head and block (block-copy.ts).
import type { SeqEntry } from './sequence.ts';

export interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export class BlockPool {
  /** fp32 bytes one token occupies over all layers, K and V. */
  readonly bytesPerToken: number;
  readonly blockBytes: number;
  /** Most fp32 blocks the budget allows. */
  readonly numBlocks: number;
  /** [layers, 2, kvHeads, blockSize, headDim] per allocated block, indexed by block id. Blocks are
   *  created on first need, never dropped: a freed id goes to `free` and is reused first. */
  readonly blocks: Float32Array[] = [];
  private readonly free: number[] = [];
  /** Blocks reserved by all sequences together (each sequence's share is its `reserved`). */
  private reservedBlocks = 0;
  /** Bytes of all sequences' quantized stairs (each sequence's share is its `quantBytes`). */
  private quantBytesInUse = 0;

  constructor(
    readonly shape: KvShape,
    readonly budgetBytes: number,
    readonly blockSize: number,
  ) {
    this.bytesPerToken = shape.layers * 2 * shape.kvHeads * shape.headDim * 4;
    this.blockBytes = this.bytesPerToken * blockSize;
    this.numBlocks = Math.floor(budgetBytes / this.blockBytes);
    if (this.numBlocks < 1) throw new Error(`KV budget ${budgetBytes} bytes holds no block of ${blockSize} tokens`);
  }

  get reserved(): number {
    return this.reservedBlocks;
  }

  private usedBlocks(): number {
    return this.blocks.length - this.free.length;
  }

  /** Bytes counted against the budget: allocated and reserved blocks, and quantized stairs. */
  bytesInUse(): number {
    return (this.usedBlocks() + this.reservedBlocks) * this.blockBytes + this.quantBytesInUse;
  }

  /** Bytes the budget still allows, reservations deducted. */
  private bytesFree(): number {
    return this.budgetBytes - this.bytesInUse();
  }

  /** fp32 blocks that could still be allocated by a sequence without a reservation. */
  freeBlocks(): number {
    return Math.max(0, Math.floor(this.bytesFree() / this.blockBytes));
  }

  /** Adds `n` blocks to the sequence's reservation (the caller has checked they fit). */
  reserve(e: SeqEntry, n: number): void {
    e.reserved += n;
    this.reservedBlocks += n;
  }

  /** Appends `n` blocks to the sequence's table, taken from its reservation first (the caller has
   *  checked the rest fit). */
  grow(e: SeqEntry, n: number): void {
    for (let i = 0; i < n; i++) e.blocks.push(this.alloc());
    const fromReserve = Math.min(n, e.reserved);
    e.reserved -= fromReserve;
    this.reservedBlocks -= fromReserve;
  }

  private alloc(): number {
    const id = this.free.pop();
    if (id !== undefined) return id;
    this.blocks.push(new Float32Array(this.shape.layers * 2 * this.blockSize * this.shape.kvHeads * this.shape.headDim));
    return this.blocks.length - 1;
  }

  /** Frees the sequence's oldest `n` blocks (their rows have moved into a quantized stair). */
  dropFront(e: SeqEntry, n: number): void {
    for (const b of e.blocks.splice(0, n)) this.free.push(b);
  }

  /** Frees the sequence's newest blocks until it holds `keep` (rollback). */
  truncate(e: SeqEntry, keep: number): void {
    while (e.blocks.length > keep) this.free.push(e.blocks.pop()!);
  }

  /** Counts `bytes` (negative when a stair shrinks) of quantized stairs for the sequence. */
  addQuant(e: SeqEntry, bytes: number): void {
    e.quantBytes += bytes;
    this.quantBytesInUse += bytes;
  }

  /** Returns everything the sequence holds or has reserved to the budget. */
  release(e: SeqEntry): void {
    for (const b of e.blocks) this.free.push(b);
    this.quantBytesInUse -= e.quantBytes;
    this.reservedBlocks -= e.reserved;
  }

  /** Offset of (layer, K=0/V=1, kv head, row in block) inside a block buffer: each head's rows of
   *  a block are contiguous, so reads into the graphs' head-major past copy whole runs. */
  off(layer: number, kv: 0 | 1, head: number, row: number): number {
    return (((layer * 2 + kv) * this.shape.kvHeads + head) * this.blockSize + row) * this.shape.headDim;
  }
}
