// What the KV cache reports of itself (metrics, /health, responses).

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
