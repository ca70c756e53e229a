// Acceptance policies: given the target's distribution at every node of a verified tree, decide
// which path is kept and which token the target adds after it (the bonus token).
//
// A step emits the kept path's draft tokens plus the bonus token; the statistics built on that are
// defined once, in src/engine/stats.ts.
//
// Lossless rules (docs/methods.md §8):
//   greedy (temperature 0)     longest path whose every token is the target argmax at its parent
//   deterministic children     accept x with p(x); on rejection zero p(x), renormalise, next sibling
//   sampled children (from q)  accept x with min(1, p(x)/q(x)); on rejection p <- norm(max(0, p - q))
// The bonus is drawn from the (residual) distribution at the node where the walk stopped, or is the
// accepted child whose own logits are not exact (VerifyTree.exact).
import type { Rng } from '../util/rng.ts';
import { argmax, sampleFrom } from './sampling.ts';

export interface VerifyTree {
  /** [nodes] token at each node; node 0 is the root (already chosen, never re-checked). */
  tokens: Int32Array;
  /** [nodes] parent index; -1 for the root. Topological order. */
  parents: Int32Array;
  kind: 'deterministic' | 'sampled';
  /** [nodes, vocab] for sampled trees: q that node i was drawn from. Row 0 unused. */
  draftProbs?: Float32Array;
  /**
   * [nodes] 1 where the node's logits are bit-identical to decoding its path one token at a time
   * (the tree's main chain: see forward/cache-slots.ts); absent = every node. An accepted node
   * off the main chain ends the walk as the bonus token: its token was chosen from exact logits,
   * its own logits may differ from plain decoding's in the last bits.
   */
  exact?: Uint8Array;
}

export interface VerifyResult {
  /** Node indices kept, starting with the root (0). */
  path: number[];
  /** Token the target emits after the last kept node. */
  bonus: number;
}

/** Children of each node. Deterministic trees are deduplicated by token (first occurrence wins:
 *  after a rejection p(x) = 0, so a duplicate could never be accepted anyway). Sampled children keep
 *  their duplicates: they are i.i.d. draws, and the residual rule is lossless only over all of them. */
export function childrenOf(tree: VerifyTree): number[][] {
  const n = tree.tokens.length;
  const kids: number[][] = Array.from({ length: n }, () => []);
  for (let i = 1; i < n; i++) {
    const p = tree.parents[i];
    if (p < 0 || p >= i) throw new Error(`draft tree node ${i} has parent ${p}: not topologically ordered`);
    if (tree.kind === 'sampled' || !kids[p].some((c) => tree.tokens[c] === tree.tokens[i])) kids[p].push(i);
  }
  return kids;
}

export function verifyGreedy(
  tree: VerifyTree,
  argmaxAt: (node: number) => number,
  /** LANTERN greedy (lossy): a child also wins when it is the argmax of its own relaxed p̃. */
  relaxed?: { distAt: (node: number) => Float64Array; relax: Relax; onRelaxed?: () => void },
): VerifyResult {
  const kids = childrenOf(tree);
  const path = [0];
  let node = 0;
  for (;;) {
    const want = argmaxAt(node);
    let next = kids[node].find((c) => tree.tokens[c] === want);
    if (next === undefined && relaxed && kids[node].length) {
      const p = relaxed.distAt(node);
      next = kids[node].find((c) => {
        const r = relaxed.relax(p, tree.tokens[c]);
        return r.absorbed > 0 && argmax(r.p) === tree.tokens[c];
      });
      if (next !== undefined) relaxed.onRelaxed?.();
    }
    if (next === undefined) return { path, bonus: want };
    if (tree.exact && !tree.exact[next]) return { path, bonus: tree.tokens[next] };
    path.push(next);
    node = next;
  }
}

/**
 * Optional relaxation of the target distribution at a node, given its first draft child's token.
 * Used only by the lossy LANTERN policy; without it every rule here is lossless.
 */
export type Relax = (p: Float64Array, firstChildToken: number) => { p: Float64Array; absorbed: number };

export function verifySampled(tree: VerifyTree, distAt: (node: number) => Float64Array, rng: Rng, relax?: Relax, onRelaxed?: () => void): VerifyResult {
  const kids = childrenOf(tree);
  const V = tree.kind === 'sampled' ? requireProbs(tree) : 0;
  const path = [0];
  let node = 0;
  for (;;) {
    // copy: the residual updates must not leak into the caller's cached distribution
    let p = Float64Array.from(distAt(node));
    if (relax && kids[node].length) {
      // sample exactly from p̃ (defined by the first child) instead of p: lossy, TV(p, p̃) <= delta
      const r = relax(p, tree.tokens[kids[node][0]]);
      if (r.absorbed > 0) {
        p = Float64Array.from(r.p);
        onRelaxed?.();
      }
    }
    let next = -1;
    for (const c of kids[node]) {
      const x = tree.tokens[c];
      const u = rng.next();
      if (tree.kind === 'deterministic') {
        if (u < p[x]) {
          next = c;
          break;
        }
        p[x] = 0;
        normalise(p);
      } else {
        const q = tree.draftProbs!.subarray(c * V, (c + 1) * V);
        const ratio = q[x] > 0 ? p[x] / q[x] : 0;
        if (u < Math.min(1, ratio)) {
          next = c;
          break;
        }
        for (let i = 0; i < p.length; i++) p[i] = Math.max(0, p[i] - q[i]);
        if (!normalise(p)) p.set(distAt(node)); // p == q exactly: residual empty, cannot happen after a rejection in exact arithmetic
      }
    }
    if (next < 0) return { path, bonus: sampleFrom(p, rng) };
    if (tree.exact && !tree.exact[next]) return { path, bonus: tree.tokens[next] };
    path.push(next);
    node = next;
  }
}

function requireProbs(tree: VerifyTree): number {
  if (!tree.draftProbs) throw new Error('sampled draft tree without draft probabilities');
  return tree.draftProbs.length / tree.tokens.length;
}

function normalise(p: Float64Array): boolean {
  let s = 0;
  for (let i = 0; i < p.length; i++) s += p[i];
  if (!(s > 0)) return false;
  for (let i = 0; i < p.length; i++) p[i] /= s;
  return true;
}
