// Turning scored candidates into a draft tree (EAGLE-2's rerank): keep the `maxNodes` best
// candidates by cumulative log-probability. A child never scores above its parent, so the kept set
// is ancestor-closed; output is breadth-first so parents precede children.
import type { DraftTree } from './Drafter.ts';

export interface Candidate {
  token: number;
  /** Index into the candidate list, -1 = child of the root. */
  parent: number;
  /** Cumulative log-probability of the path (<= the parent's). */
  score: number;
  depth: number;
}

export function rerank(cands: readonly Candidate[], maxNodes: number): DraftTree | null {
  const order = cands.map((_, i) => i).sort((a, b) => cands[b].score - cands[a].score || cands[a].depth - cands[b].depth || a - b);
  const keep = new Set<number>();
  for (const i of order) {
    if (keep.size >= maxNodes) break;
    const p = cands[i].parent;
    if (p >= 0 && !keep.has(p)) continue; // parent not kept (tie broken against it): skip
    keep.add(i);
  }
  if (keep.size === 0) return null;
  const kept = [...keep].sort((a, b) => cands[a].depth - cands[b].depth || cands[b].score - cands[a].score);
  const index = new Map<number, number>();
  kept.forEach((c, j) => index.set(c, j));
  return {
    tokens: Int32Array.from(kept, (c) => cands[c].token),
    parents: Int32Array.from(kept, (c) => (cands[c].parent < 0 ? -1 : index.get(cands[c].parent)!)),
    kind: 'deterministic',
  };
}
