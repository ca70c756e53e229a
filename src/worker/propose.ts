// Proposing: each drafter drafts for all of its sequences in one call, and the trees are fitted to
// the rows (cut to the row's draft limit and to what the graph can verify). Drafters only propose;
// verify.ts alone decides what is kept.
import type { DraftContext, Drafter, DraftTree, PastView } from '../drafters/Drafter.ts';
import type { PagedKvCache } from '../kvcache/paged.ts';
import type { GraphLayout } from './forward/layout.ts';
import type { Row } from './plan.ts';
import type { Sequence } from './sequence.ts';

export interface ProposeEnv {
  kv: PagedKvCache;
  hiddenSize: number;
  layout: GraphLayout;
}

/** Asks the drafters for the rows with a draft limit and hangs each tree below its row's root. */
export async function propose(rows: readonly Row[], env: ProposeEnv): Promise<void> {
  const byDrafter = new Map<Drafter, Row[]>();
  for (const r of rows) {
    const d = r.seq.drafter;
    if (!d || r.draftLimit <= 0) continue;
    const list = byDrafter.get(d);
    if (list) list.push(r);
    else byDrafter.set(d, [r]);
  }
  for (const [drafter, list] of byDrafter) {
    let trees: (DraftTree | null)[];
    const t0 = performance.now();
    try {
      trees = await drafter.propose(list.map((r) => draftContext(r.seq, r.draftLimit, env)));
      const ms = (performance.now() - t0) / list.length;
      for (const r of list) r.seq.stats.draftMs += ms;
    } catch (err) {
      // a broken drafter costs speed, never correctness: plain decoding for these sequences
      for (const r of list) {
        r.seq.stats.fallback = `drafter ${drafter.name} failed: ${(err as Error).message}`;
        r.seq.drafter = undefined;
        drafter.release(r.seq.id);
      }
      continue;
    }
    list.forEach((r, i) => {
      const proposed = trees[i];
      if (!proposed || proposed.tokens.length === 0) return;
      const tree = env.layout.fitTree(proposed, r.draftLimit);
      const n = tree.tokens.length;
      if (!env.kv.canGrow(r.seq.id, n + 1)) return;
      r.tree = tree;
      for (let j = 0; j < n; j++) {
        const p = tree.parents[j];
        if (p >= j) throw new Error(`drafter ${drafter.name}: node ${j} has parent ${p}`);
        r.tokens.push(tree.tokens[j]);
        r.parents.push(p + 1); // shift: node 0 of the row is the root
        r.depth.push(r.depth[p + 1] + 1);
      }
    });
  }
}

function draftContext(s: Sequence, maxNodes: number, env: ProposeEnv): DraftContext {
  const d = s.drafter!;
  const ctx: DraftContext = { seqId: s.id, tokens: s.tokens, maxNodes, hidden: s.hidden };
  if (d.needs.history) {
    const n = s.history.length;
    const D = env.hiddenSize;
    const rows = new Float32Array(n * D); // [n, hidden]
    s.history.forEach((h, i) => rows.set(h, i * D));
    ctx.history = { from: s.historyFrom, rows };
    s.historyFrom += n;
    s.history = [];
  }
  if (d.needs.pastLayers) ctx.past = pastView(env.kv, s.id, d.needs.pastLayers);
  return ctx;
}

/** The drafter's read-only view of a sequence's committed K/V (layers [0, layers)). */
function pastView(kv: PagedKvCache, seqId: number, layers: number): PastView {
  return {
    length: kv.length(seqId),
    read(keys, values, from, capacity) {
      const len = kv.length(seqId);
      if (len > capacity) return false;
      // a quantized cache rewrites old rows at commit, so a caller's earlier copy may be stale
      if (!kv.rowsStable) kv.gatherLayers(seqId, 0, layers, keys, values, 0, capacity);
      else kv.gatherRange(seqId, 0, layers, from, len, keys, values, 0, capacity);
      return true;
    },
  };
}

/** The first n nodes of a tree (still ancestor-closed: parents come before children). */
export function truncateTree(tree: DraftTree, n: number): DraftTree {
  if (tree.tokens.length <= n) return tree;
  const V = tree.probs ? tree.probs.length / tree.tokens.length : 0;
  const f = tree.features;
  const rowsOf = (a: Float32Array) => a.slice(0, (a.length / (tree.tokens.length + 1)) * (n + 1)); // root + first n nodes
  return {
    tokens: tree.tokens.slice(0, n), parents: tree.parents.slice(0, n), kind: tree.kind, probs: tree.probs?.slice(0, n * V),
    stoppedEarly: tree.stoppedEarly,
    features: f && { layers: f.layers, hidden: rowsOf(f.hidden), keys: f.keys.map(rowsOf), values: f.values.map(rowsOf) },
  };
}
