// The forward stage: one module per ONNX layout builds the forward's inputs from the step's rows,
// runs it, and hands back the outputs row by row. Which module is chosen once, when the model loads.
import type { DraftTree } from '../../drafters/Drafter.ts';
import type { PagedKvCache } from '../../kvcache/paged.ts';
import type { GraphLayoutName } from '../../model/config.ts';
import type { Row } from '../plan.ts';
import type { DeepInput, ForwardInput, ForwardOutput } from '../runner.ts';
import { OptimumLayout } from './optimum.ts';
import { SpeculativeLayout } from './speculative.ts';

/** What the scheduler needs of the target (the Runner; a fake model in unit tests). */
export interface ForwardFn {
  readonly layout: GraphLayoutName;
  forward(x: ForwardInput): Promise<ForwardOutput>;
  /** The target's layers [fromLayer, L) as a graph of their own, when the model has one. */
  readonly deep?: { fromLayer: number } | null;
  forwardDeep?(x: DeepInput): Promise<ForwardOutput>;
}

/** The shapes the forward works with. */
export interface LayoutModel {
  vocabSize: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number;
}

/** One forward's result: its rows in the order of the output, and outputs laid out
 *  [rows, newTokens, ...] (logits, hidden, and per layer the new rows' K/V). */
export interface ForwardPass {
  rows: Row[];
  out: ForwardOutput;
}

export interface GraphLayout {
  /** A drafter's tree cut to what this graph can verify and to `maxNodes` nodes. */
  fitTree(tree: DraftTree, maxNodes: number): DraftTree;
  /** The step's rows split into forwards (rows of one forward are padded to the longest). */
  groups(rows: readonly Row[]): Row[][];
  run(group: Row[]): Promise<ForwardPass>;
  /** No sequence is running: hand kept batch buffers back. */
  idle(): void;
}

export interface LayoutEnv {
  model: LayoutModel;
  kv: PagedKvCache;
  /** Keep decode batches' past K/V between steps and copy only new rows (fp32 cache). */
  keepBatchPast: boolean;
}

export function graphLayout(target: ForwardFn, env: LayoutEnv): GraphLayout {
  const name = target.layout;
  switch (name) {
    case 'speculative':
      return new SpeculativeLayout(target, env);
    case 'optimum':
      return new OptimumLayout(target, env);
    default:
      throw new Error(`unhandled graph layout ${name satisfies never}`);
  }
}
