// What the KV cache reports of itself (metrics, /health, responses), and how it is counted from
// the block pool and the sequences' entries.
import type { BlockPool } from './block-pool.ts';
import { addTierBytes, tokenTier } from './saq.ts';
import type { SeqEntry } from './sequence.ts';

export interface KvStats {
  blockSize: number;
  blocksTotal: number;
  blocksFree: number;
  /** Committed tokens held, over all sequences. */
  tokens: number;
  bytesTotal: number;
  bytesInUse: number;
  /** Bytes in use by tier: 'fp32', 'q8', 'q6', 'q5', 'q4', ... (quantized blocks by width), and
   *  'reserved' (blocks promised to admitted sequences, not yet written). They sum to
   *  `bytesInUse`. */
  bytesByTier: Record<string, number>;
  /** fp32 blocks promised to sequences at admission and not yet allocated (counted in use). */
  blocksReserved: number;
  sequences: number;
}

/** One sequence's share of the cache (`PagedKvCache.usage`). */
export interface KvUsage {
  /** Committed tokens held, by tier: 'fp32' (the window) and stairs: 'q8' where every layer's
   *  keys and values hold 8 bits, 'q4-8' where their widths range over 4..8. */
  tokensByTier: Record<string, number>;
  /** Bytes held, by tier, plus 'reserved' (its unconverted reservation). Sum: `bytes`. */
  bytesByTier: Record<string, number>;
  tokens: number;
  bytes: number;
  /** Most bytes the sequence held at once (written blocks and stairs; reservations excluded). */
  peakBytes: number;
}

/** One sequence's tokens and bytes by tier. */
export function seqUsage(e: SeqEntry, blockBytes: number): KvUsage {
  const fp = e.length - e.quantized;
  const tokensByTier: Record<string, number> = { fp32: fp };
  const bytesByTier: Record<string, number> = { fp32: e.blocks.length * blockBytes, reserved: e.reserved * blockBytes };
  for (const s of e.segments) {
    const tier = tokenTier(s);
    tokensByTier[tier] = (tokensByTier[tier] ?? 0) + s.tokens;
    addTierBytes(bytesByTier, s);
  }
  const bytes = bytesByTier.fp32 + bytesByTier.reserved + e.quantBytes;
  return { tokensByTier, bytesByTier, tokens: e.length, bytes, peakBytes: e.peakBytes };
}

/** The whole cache: the pool's budget and every sequence's blocks and stairs. */
export function cacheStats(pool: BlockPool, seqs: ReadonlyMap<number, SeqEntry>): KvStats {
  let tokens = 0;
  const bytesByTier: Record<string, number> = { fp32: 0, reserved: pool.reserved * pool.blockBytes };
  for (const e of seqs.values()) {
    tokens += e.length;
    bytesByTier.fp32 += e.blocks.length * pool.blockBytes;
    for (const s of e.segments) addTierBytes(bytesByTier, s);
  }
  return {
    blockSize: pool.blockSize,
    blocksTotal: pool.numBlocks,
    blocksFree: pool.freeBlocks(),
    tokens,
    bytesTotal: pool.budgetBytes,
    bytesInUse: pool.bytesInUse(),
    bytesByTier,
    blocksReserved: pool.reserved,
    sequences: seqs.size,
  };
}
