// Where a row's new tokens go in the past buffer of the speculative layout.

export interface CacheSlots {
  /** [nodes] the node's cache slot, after the sequence's cached rows. */
  offset: number[];
  /** [nodes] 1 on the main chain. */
  onChain: Uint8Array;
}

/**
 * The graph sums a query's attention over keys by slot (models/tooling/graph.py, _slot_index), so
 * a node gets exactly the logits of decoding its path one token at a time only when its ancestors
 * hold the slots right after the cached rows, in order, with no other key between them. One path
 * can have that: the main chain (root, its first child, that node's first child, ...; drafters
 * list their likeliest child first) takes slots 0, 1, 2, ... after the cache, every other node the
 * slots after it. Prompt chunks and draft chains are all main chain. Verification stops at an
 * accepted node off the chain (VerifyTree.exact).
 */
export function cacheSlots(parents: readonly number[]): CacheSlots {
  const n = parents.length;
  const offset = new Array<number>(n).fill(-1);
  const onChain = new Uint8Array(n);
  let next = 0;
  for (let node = 0; node >= 0; ) {
    offset[node] = next++;
    onChain[node] = 1;
    node = parents.indexOf(node, node + 1);
  }
  for (let i = 0; i < n; i++) if (offset[i] < 0) offset[i] = next++;
  return { offset, onChain };
}
