// Committing: the kept rows of a forward enter the KV cache, and the target states drafters asked
// for are kept beside the sequence. Rejected draft rows are simply never appended, so rollback
// costs nothing and unverified K/V never reaches the quantized tiers.
import type { PagedKvCache } from '../kvcache/paged.ts';
import type { ForwardOutput } from './runner.ts';
import type { Sequence } from './sequence.ts';

/**
 * Appends the rows at `nodes` of one row of a forward (`base`: its first token index in the
 * [rows * newTokens] flattening) to the sequence's cache.
 */
export function commitRows(kv: PagedKvCache, s: Sequence, out: ForwardOutput, base: number, nodes: readonly number[], hiddenSize: number): void {
  const ok = kv.append(s.id, out.keys, out.values, nodes.map((n) => base + n));
  if (!ok) throw new Error('KV append beyond reservation');
  const D = hiddenSize;
  if (out.hidden) {
    const last = base + nodes[nodes.length - 1];
    s.hidden = out.hidden.slice(last * D, (last + 1) * D);
  }
  const kind = s.drafter?.needs.history;
  const src = kind === 'final' ? out.hidden : kind === 'shallow' ? out.hiddenShallow : undefined;
  if (src) for (const n of nodes) s.history.push(src.slice((base + n) * D, (base + n + 1) * D));
}
