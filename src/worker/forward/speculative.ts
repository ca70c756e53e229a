// The speculative layout (this project's graphs): every row of a batch carries its new tokens as a
// tree, the graph writes each new token's K/V at its cache slot inside the past buffer and attends
// through an additive bias, so root + draft tree of many sequences verify in one forward.
// Rows whose drafter already ran the target's shallow layers (Kangaroo) are verified by the deep
// layers alone.
import type { DraftTree } from '../../drafters/Drafter.ts';
import { BatchPast } from '../../kvcache/batch-past.ts';
import { NEG_BIAS } from '../../model/onnx-layout.ts';
import type { Row } from '../plan.ts';
import { truncateTree } from '../propose.ts';
import type { ForwardOutput } from '../runner.ts';
import { BufferPool } from './buffers.ts';
import { cacheSlots } from './cache-slots.ts';
import type { ForwardFn, ForwardPass, GraphLayout, LayoutEnv } from './layout.ts';

export class SpeculativeLayout implements GraphLayout {
  private readonly buffers = new BufferPool();
  /** The kept past of each kind of forward: `${kind}:${fromLayer}` (decode, Kangaroo's deep-only
   *  decode, prompt chunks). */
  private readonly pastViews = new Map<string, BatchPast>();

  constructor(private readonly target: ForwardFn, private readonly env: LayoutEnv) {}

  fitTree(tree: DraftTree, maxNodes: number): DraftTree {
    const cut = truncateTree(tree, maxNodes);
    return cut.features && !this.featuresFit(cut) ? { ...cut, features: undefined } : cut;
  }

  groups(rows: readonly Row[]): Row[][] {
    // A 256-token prompt chunk in the same forward as 1-token decode rows would make every decode
    // row cost 256 positions: decode rows (root + tree) go together, prompt chunks separately.
    return [
      rows.filter((r) => r.kind === 'decode' && deep(r)),
      rows.filter((r) => r.kind === 'decode' && !deep(r)),
      rows.filter((r) => r.kind === 'prefill'),
    ].filter((g) => g.length);
  }

  async run(group: Row[]): Promise<ForwardPass> {
    if (deep(group[0])) {
      const from = this.target.deep!.fromLayer;
      const { rows, input } = this.batchInput(group, from);
      const D = this.env.model.hiddenSize;
      const hidden = new Float32Array(input.batch * input.newTokens * D); // [batch, newTokens, hidden]
      rows.forEach((r, b) => hidden.set(r.tree!.features!.hidden, b * input.newTokens * D));
      const out = await this.target.forwardDeep!({ ...input, hidden });
      return { rows, out: this.withShallow(rows, out, hidden) };
    }
    const { rows, input } = this.batchInput(group, 0);
    const inputIds = new BigInt64Array(input.batch * input.newTokens); // [batch, newTokens]
    rows.forEach((r, b) => r.tokens.forEach((tok, t) => (inputIds[b * input.newTokens + t] = BigInt(tok))));
    return { rows, out: await this.target.forward({ ...input, inputIds }) };
  }

  idle(): void {
    for (const v of this.pastViews.values()) v.clear();
  }

  /** Drafter-computed shallow features are usable when they match the deep graph and the row. */
  private featuresFit(tree: DraftTree): boolean {
    const f = tree.features!;
    const { numKvHeads, headDim, hiddenSize } = this.env.model;
    const W = numKvHeads * headDim;
    const rows = tree.tokens.length + 1;
    return (
      this.target.deep?.fromLayer === f.layers &&
      f.hidden.length === rows * hiddenSize &&
      f.keys.length === f.layers &&
      f.keys.every((k, i) => k.length === rows * W && f.values[i].length === rows * W)
    );
  }

  /** The deep graph's output completed with the drafter's shallow K/V and states (`hiddenShallow`:
   *  the deep input's states), laid out like a full forward's ([batch, newTokens, ...] per layer). */
  private withShallow(rows: Row[], out: ForwardOutput, hiddenShallow: Float32Array): ForwardOutput {
    const B = rows.length;
    const T = Math.max(...rows.map((r) => r.tokens.length));
    const from = this.target.deep!.fromLayer;
    const W = this.env.model.numKvHeads * this.env.model.headDim;
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    for (let l = 0; l < from; l++) {
      const k = new Float32Array(B * T * W); // [batch, newTokens, kvHeads * headDim]
      const v = new Float32Array(B * T * W);
      rows.forEach((r, b) => {
        k.set(r.tree!.features!.keys[l], b * T * W);
        v.set(r.tree!.features!.values[l], b * T * W);
      });
      keys.push(k);
      values.push(v);
    }
    return { logits: out.logits, hidden: out.hidden, hiddenShallow, keys: [...keys, ...out.keys], values: [...values, ...out.values] };
  }

  /** Positions, tree bias and past K/V of target layers [fromLayer, L) for a batch of rows. Batches
   *  over an fp32 cache read their past from a view kept between steps (`BatchPast`), in the view's
   *  order: the rows come back in the order the input uses. */
  private batchInput(group: Row[], fromLayer: number) {
    const { kv, model } = this.env;
    const { numLayers, numKvHeads, headDim } = model;
    const W = numKvHeads * headDim;
    const B = group.length;
    const T = Math.max(...group.map((r) => r.tokens.length));
    let rows = group;
    let P: number;
    let pastKeys: Float32Array[] = []; // per layer [batch, kvHeads, past, headDim]
    let pastValues: Float32Array[] = [];
    const view = this.pastView(group[0].kind, fromLayer);
    if (view) {
      const v = view.prepare(group.map((r) => r.seq.id), T);
      rows = v.order.map((i) => group[i]);
      P = v.stride;
      pastKeys = v.keys;
      pastValues = v.values;
    } else {
      P = Math.max(...group.map((r) => kv.length(r.seq.id))) + T;
      for (let l = fromLayer; l < numLayers; l++) {
        pastKeys.push(this.buffers.get(`k${l}`, B * P * W));
        pastValues.push(this.buffers.get(`v${l}`, B * P * W));
      }
      group.forEach((r, b) => kv.gatherLayers(r.seq.id, fromLayer, numLayers, pastKeys, pastValues, b, P));
    }
    // row b's new token t takes cache slot L_b + t of the past buffer (rows padded to T too, into
    // slots no real token sees), and attends to the L_b cached rows and its ancestors' slots
    const positionIds = new BigInt64Array(B * T); // [batch, newTokens]
    const cachePosition = new BigInt64Array(B * T); // [batch, newTokens]
    const bias = new Float32Array(B * T * P).fill(NEG_BIAS); // [batch, 1, newTokens, past]
    rows.forEach((r, b) => {
      const L = kv.length(r.seq.id);
      const slots = (r.slots = cacheSlots(r.parents));
      for (let t = 0; t < T; t++) cachePosition[b * T + t] = BigInt(L + (t < r.tokens.length ? slots.offset[t] : t));
      for (let t = 0; t < r.tokens.length; t++) {
        positionIds[b * T + t] = BigInt(L + r.depth[t]);
        const rowOff = (b * T + t) * P;
        bias.fill(0, rowOff, rowOff + L);
        for (let a = t; a >= 0; a = r.parents[a]) bias[rowOff + L + slots.offset[a]] = 0;
      }
    });
    return { rows, input: { batch: B, newTokens: T, past: P, positionIds, cachePosition, attentionBias: bias, pastKeys, pastValues } };
  }

  /** The kept past of layers [fromLayer, L) for one kind of forward: a long prompt's chunks, like
   *  decode steps, would otherwise copy (and under SAQ dequantize) the whole past every time. */
  private pastView(kind: Row['kind'], fromLayer: number): BatchPast | null {
    if (!this.env.keepBatchPast) return null;
    const key = `${kind}:${fromLayer}`;
    let v = this.pastViews.get(key);
    if (!v) {
      v = new BatchPast(this.env.kv, fromLayer, this.env.model.numLayers);
      this.pastViews.set(key, v);
    }
    return v;
  }
}

/** Rows whose drafter already ran the target's shallow layers. */
function deep(r: Row): boolean {
  return r.tree?.features !== undefined;
}
