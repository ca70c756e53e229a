// What the cache keeps for one sequence: its fp32 block table and its quantized stairs, with the
// counters the budget (block-pool.ts), the reports (stats.ts) and the readers of its rows
// (`generation`, `rewrittenSince`) need.
import type { Segment } from './saq.ts';

export interface SeqEntry {
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

export function newSeqEntry(gen: number): SeqEntry {
  return { blocks: [], quantized: 0, length: 0, segments: [], quantBytes: 0, reserved: 0, peakBytes: 0, gen, rewritten: [] };
}
