// Verification: the target's distribution at every node of a decode row (penalties, min_tokens,
// temperature, top-k/top-p: exactly what plain decoding would sample from there), handed to the
// acceptance rule the request uses — greedy, speculative sampling, or the opt-in lossy LANTERN —
// which decides the kept path and the bonus token (acceptance.ts).
import { verifyGreedy, verifySampled, type VerifyResult, type VerifyTree } from './acceptance.ts';
import type { Row } from './plan.ts';
import { argmax, penalize, sampleFrom, warp, type TokenCounts } from './sampling.ts';
import type { Sequence } from './sequence.ts';

/** The target's choice at one position, as plain decoding makes it. */
export class TargetDistribution {
  constructor(private readonly eos: ReadonlySet<number>) {}

  /** The first token, read off the prompt's last position. */
  choose(s: Sequence, logits: Float32Array): number {
    if (s.req.sampling.temperature === 0) return this.greedyToken(s, logits, s.counts, s.generated);
    return sampleFrom(this.dist(s, logits, s.counts, s.generated), s.rng);
  }

  greedyToken(s: Sequence, logits: Float32Array, counts: TokenCounts, generated: number): number {
    const x = penalize(logits, s.req.sampling, counts);
    if (!this.masksEos(s, generated)) return argmax(x);
    const y = x === logits ? Float32Array.from(x) : x;
    for (const e of this.eos) y[e] = -Infinity;
    return argmax(y);
  }

  /** The distribution plain sampling would draw from; `temperature` overrides for LANTERN greedy,
   *  which needs the target's soft distribution (temperature 1) rather than the one-hot argmax. */
  dist(s: Sequence, logits: Float32Array, counts: TokenCounts, generated: number, temperature?: number): Float64Array {
    let x = logits;
    if (this.masksEos(s, generated)) {
      x = Float32Array.from(logits);
      for (const e of this.eos) x[e] = -Infinity;
    }
    const params = temperature === undefined ? s.req.sampling : { ...s.req.sampling, temperature, topK: 0, topP: 1 };
    return warp(x, params, counts);
  }

  /** min_tokens: EOS cannot be chosen before it. */
  private masksEos(s: Sequence, generated: number): boolean {
    return generated < s.req.minTokens;
  }
}

/** Verifies a decode row (root + draft tree) against the target's logits at its nodes. */
export function verifyRow(r: Row, logitsAt: (node: number) => Float32Array, vocabSize: number, target: TargetDistribution): VerifyResult {
  const s = r.seq;
  const tree: VerifyTree = {
    tokens: Int32Array.from(r.tokens),
    parents: Int32Array.from(r.parents),
    kind: r.tree?.kind ?? 'deterministic',
    draftProbs: r.tree?.probs ? withRootRow(r.tree.probs, vocabSize) : undefined,
    exact: r.slots?.onChain,
  };
  // penalties and min_tokens at a node see the tokens on its path as already generated
  const countsAt = (node: number) => {
    if (node === 0) return s.counts; // the root's count is already in s.counts
    const c = new Map(s.counts);
    for (let a = node; a > 0; a = r.parents[a]) c.set(r.tokens[a], (c.get(r.tokens[a]) ?? 0) + 1);
    return c;
  };
  const generatedAt = (node: number) => s.generated + r.depth[node];
  const onRelaxed = () => s.stats.relaxedSteps++;
  if (s.req.sampling.temperature === 0) {
    return verifyGreedy(
      tree,
      (node) => target.greedyToken(s, logitsAt(node), countsAt(node), generatedAt(node)),
      s.relax && { relax: s.relax, onRelaxed, distAt: (node) => target.dist(s, logitsAt(node), countsAt(node), generatedAt(node), 1) },
    );
  }
  return verifySampled(tree, (node) => target.dist(s, logitsAt(node), countsAt(node), generatedAt(node)), s.rng, s.relax, onRelaxed);
}

/** A draft tree's q rows are per draft node; the verify tree has the root in front. */
function withRootRow(probs: Float32Array, V: number): Float32Array {
  const out = new Float32Array(probs.length + V); // [nodes + 1, vocab]
  out.set(probs, V);
  return out;
}
