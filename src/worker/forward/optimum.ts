// The Hugging Face Optimum layout: the graph builds its causal mask itself, so it cannot take a
// tree, and rows of different lengths cannot share a forward. Each row runs alone, and draft trees
// are cut to their first chain.
import type { DraftTree } from '../../drafters/Drafter.ts';
import type { Row } from '../plan.ts';
import { truncateTree } from '../propose.ts';
import type { ForwardInput, ForwardOutput } from '../runner.ts';
import { BufferPool } from './buffers.ts';
import type { ForwardFn, ForwardPass, GraphLayout, LayoutEnv } from './layout.ts';

export class OptimumLayout implements GraphLayout {
  private readonly buffers = new BufferPool();

  constructor(private readonly target: ForwardFn, private readonly env: LayoutEnv) {}

  fitTree(tree: DraftTree, maxNodes: number): DraftTree {
    return truncateTree(firstChain(tree), maxNodes);
  }

  groups(rows: readonly Row[]): Row[][] {
    return rows.map((r) => [r]);
  }

  async run(group: Row[]): Promise<ForwardPass> {
    const r = group[0];
    const out = await this.target.forward(this.input(r));
    return { rows: group, out: this.newRows(r, out) };
  }

  idle(): void {}

  private input(r: Row): ForwardInput {
    const T = r.tokens.length;
    const P = this.env.kv.length(r.seq.id);
    const { numLayers, numKvHeads, headDim } = this.env.model;
    const pastKeys: Float32Array[] = []; // per layer [1, kvHeads, past, headDim]
    const pastValues: Float32Array[] = [];
    for (let l = 0; l < numLayers; l++) {
      pastKeys.push(this.buffers.get(`k${l}`, P * numKvHeads * headDim));
      pastValues.push(this.buffers.get(`v${l}`, P * numKvHeads * headDim));
    }
    this.env.kv.gather(r.seq.id, pastKeys, pastValues, 0, P);
    return {
      batch: 1,
      newTokens: T,
      past: P,
      inputIds: BigInt64Array.from(r.tokens, BigInt),
      positionIds: BigInt64Array.from(r.depth, (d) => BigInt(P + d)),
      attentionMask: new BigInt64Array(P + T).fill(1n),
      pastKeys,
      pastValues,
    };
  }

  /** Optimum's present is [1, kvHeads, past + T, headDim]: cut out the T new rows as
   *  [T, kvHeads, headDim], as the speculative layout returns them. */
  private newRows(r: Row, out: ForwardOutput): ForwardOutput {
    const T = r.tokens.length;
    const P = this.env.kv.length(r.seq.id);
    const { numKvHeads: H, headDim: D } = this.env.model;
    const cut = (a: Float32Array) => {
      const o = new Float32Array(T * H * D);
      for (let h = 0; h < H; h++)
        for (let t = 0; t < T; t++) o.set(a.subarray((h * (P + T) + P + t) * D, (h * (P + T) + P + t + 1) * D), (t * H + h) * D);
      return o;
    };
    return { logits: out.logits, keys: out.keys.map(cut), values: out.values.map(cut) };
  }
}

/** The first root-to-leaf chain of a tree. */
function firstChain(tree: DraftTree): DraftTree {
  const keep: number[] = [];
  for (let i = 0; i < tree.tokens.length; i++) {
    if (tree.parents[i] === (keep.length ? keep[keep.length - 1] : -1)) keep.push(i);
  }
  const V = tree.probs ? tree.probs.length / tree.tokens.length : 0;
  let probs: Float32Array | undefined;
  if (tree.probs) {
    probs = new Float32Array(keep.length * V); // [nodes, vocab]
    keep.forEach((r, j) => probs!.set(tree.probs!.subarray(r * V, (r + 1) * V), j * V));
  }
  return {
    tokens: Int32Array.from(keep, (i) => tree.tokens[i]),
    parents: Int32Array.from(keep, (_, j) => j - 1),
    kind: tree.kind,
    probs,
  };
}
