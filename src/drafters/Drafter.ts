// The drafter contract. A drafter only proposes; the acceptance policy in src/worker/acceptance.ts
// alone decides what is kept, so no drafter can change the output of a lossless policy.

/**
 * A draft tree hanging below the root (the last committed token, whose KV is not cached yet).
 * Nodes are in topological order: a node's parent index is smaller than its own.
 */
export interface DraftTree {
  /** [nodes] proposed token ids. */
  tokens: Int32Array;
  /** [nodes] parent node index, -1 = child of the root. */
  parents: Int32Array;
  /**
   * How children were chosen. 'deterministic' (top-k, lookup, search): verified with the q = 1
   * rule. 'sampled' (drawn i.i.d. from q): verified with min(1, p/q) and the residual, and
   * `probs` must be set.
   */
  kind: 'deterministic' | 'sampled';
  /** [nodes, vocab] the draft distribution q each node was drawn from (sampled trees only). */
  probs?: Float32Array;
  /**
   * Target work the drafter already did for root + nodes (rows in that order): the residual
   * stream after the first `layers` target layers and those layers' new K/V. The engine then runs
   * only the remaining layers to verify (Kangaroo's reuse of shallow work).
   */
  features?: ShallowFeatures;
  /** The drafter stopped before its step limit because its confidence fell (Kangaroo's second
   *  early exit); counted in the request's speculation stats. */
  stoppedEarly?: boolean;
}

export interface ShallowFeatures {
  /** Target layers [0, layers) these rows went through. */
  layers: number;
  /** [rows, hidden] residual stream after layer `layers` (pre-norm). */
  hidden: Float32Array;
  /** Per layer < `layers`: [rows, kvHeads, headDim]. */
  keys: Float32Array[];
  values: Float32Array[];
}

/** What a drafter sees of one sequence when asked for a draft. */
export interface DraftContext {
  seqId: number;
  /** Every committed token (prompt and output), ending with the root. */
  tokens: readonly number[];
  /** Upper bound on nodes in the returned tree. */
  maxNodes: number;
  /** Target post-final-norm hidden state at the root's parent position [hidden], when declared. */
  hidden?: Float32Array;
  /**
   * Target states of committed rows not delivered before, oldest first: rows [from, from + n) of
   * the sequence, [n, hidden]; every committed row is delivered exactly once, in order, even over
   * steps on which the drafter was not asked. Set when `needs.history` is declared.
   */
  history?: { from: number; rows: Float32Array };
  /** The sequence's committed K/V of the first `needs.pastLayers` target layers, when declared. */
  past?: PastView;
}

/** A read-only view of one sequence's committed K/V (the target layers a drafter declared). */
export interface PastView {
  /** Committed rows. */
  readonly length: number;
  /**
   * Copies committed rows [from, length) into per-layer buffers laid out as the graphs take their
   * past ([kvHeads, capacity, headDim]); rows before `from` that the cache has changed since are
   * copied again, so a drafter that keeps its buffers between steps passes the length it read last
   * time. Returns false, copying nothing, when `capacity` < length.
   */
  read(keys: Float32Array[], values: Float32Array[], from: number, capacity: number): boolean;
}

export interface DrafterNeeds {
  /** Target features the drafter consumes. */
  hidden: false | 'last';
  /** Target states of every committed row (DraftContext.history): post-final-norm ('final') or
   *  the residual stream after the model's shallow layers ('shallow'). */
  history?: 'final' | 'shallow';
  /** Committed K/V of the first n target layers (DraftContext.past). */
  pastLayers?: number;
  /** Whether the target must be a tree-capable (speculative-layout) model. */
  treeMask: boolean;
}

export interface Drafter {
  readonly name: string;
  readonly needs: DrafterNeeds;
  /** One entry per context; null = no draft for that sequence this step. */
  propose(batch: readonly DraftContext[]): Promise<(DraftTree | null)[]> | (DraftTree | null)[];
  /** Adaptive state update after verification: the tokens committed this step (accepted + bonus). */
  observe?(seqId: number, committed: readonly number[], accepted: number, drafted: number): void;
  /** Frees per-request state. Called exactly once per sequence that was proposed for. */
  release(seqId: number): void;
}

/** Thrown by a drafter factory when it cannot run on this model; the engine lists it as unavailable. */
export class DrafterUnavailable extends Error {
  override name = 'DrafterUnavailable';
}

/** Builds a single-path tree from a list of tokens. */
export function chain(tokens: readonly number[]): DraftTree {
  return {
    tokens: Int32Array.from(tokens),
    parents: Int32Array.from(tokens, (_, i) => i - 1),
    kind: 'deterministic',
  };
}
