// ADED (arXiv 2407.12021): an adaptive trigram matrix — corpus prior plus per-request boosts of
// trigrams the request has produced — searched with Monte-Carlo tree search (PUCT), turned into a
// bounded draft tree. No training, no drafter network. Verification is the engine's lossless
// policy (the tree is deterministic: q = 1 rule when sampling).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Rng } from '../../util/rng.ts';
import { DrafterUnavailable, type DraftContext, type Drafter, type DraftTree } from '../Drafter.ts';
import { TrigramTable } from './trigram.ts';

/** MCTS iterations per draft. Defaults to `150` (ADED's reference setting). */
export const ADED_ITERATIONS = 150;
/** Search depth in tokens. Defaults to `4`. */
export const ADED_DEPTH = 4;
/** PUCT constants c1, c2. Default to `32` and `8`. */
export const ADED_C1 = 32;
export const ADED_C2 = 8;
/** Boost added per sighting of a trigram in the recent window. Defaults to `0.04`. */
export const ADED_BOOST = 0.04;
/** Cap on a boosted weight. Defaults to `3.0`. */
export const ADED_CAP = 3.0;
/** Recent window whose trigrams are boosted before each draft. Defaults to `16` tokens. */
export const ADED_WINDOW = 16;
/** Successors considered per state. Defaults to `12` (the table's pruning). */
export const ADED_TOP = 12;

interface Node {
  token: number;
  a: number; // state = (a, token)
  prior: number;
  visits: number;
  value: number;
  depth: number;
  parent: Node | null;
  children: Node[] | null;
}

/** Per-request adaptive state: boosts over the prior, keyed by pair then successor. */
class RequestState {
  readonly boosts = new Map<number, Map<number, number>>();
  seenPrompt = false;
  steps = 0;
}

export class AdedDrafter implements Drafter {
  readonly name = 'aded';
  readonly needs = { hidden: false, treeMask: true } as const;
  private readonly states = new Map<number, RequestState>();

  constructor(private readonly table: TrigramTable) {}

  static load(env: { modelDir: string }): AdedDrafter {
    const file = path.join(env.modelDir, 'aded', 'trigram.bin');
    if (!existsSync(file)) throw new DrafterUnavailable(`no trigram prior at ${file} (npm run train-drafters -- --model MODEL_DIR --text ... --kinds aded)`);
    return new AdedDrafter(TrigramTable.load(file));
  }

  /** Live request states (for leak checks). */
  get activeRequests(): number {
    return this.states.size;
  }

  propose(batch: readonly DraftContext[]): (DraftTree | null)[] {
    return batch.map((ctx) => this.proposeOne(ctx));
  }

  release(seqId: number): void {
    this.states.delete(seqId);
  }

  private state(seqId: number): RequestState {
    let s = this.states.get(seqId);
    if (!s) {
      s = new RequestState();
      this.states.set(seqId, s);
    }
    return s;
  }

  private boost(st: RequestState, a: number, b: number, c: number): void {
    const key = a * this.table.vocab + b;
    let row = st.boosts.get(key);
    if (!row) {
      row = new Map();
      st.boosts.set(key, row);
    }
    row.set(c, Math.min(ADED_CAP, (row.get(c) ?? 0) + ADED_BOOST));
  }

  /** Successors of the pair (a, b) with weights (prior probability + boost), best first. */
  successors(st: RequestState, a: number, b: number): { token: number; weight: number }[] {
    const out = new Map<number, number>();
    const [lo, hi] = this.table.row(a, b);
    for (let i = lo; i < hi; i++) out.set(this.table.next[i], this.table.prob[i]);
    const row = st.boosts.get(a * this.table.vocab + b);
    if (row) for (const [c, w] of row) out.set(c, Math.min(ADED_CAP, (out.get(c) ?? 0) + w));
    return [...out]
      .map(([token, weight]) => ({ token, weight }))
      .sort((x, y) => y.weight - x.weight || x.token - y.token)
      .slice(0, ADED_TOP);
  }

  private proposeOne(ctx: DraftContext): DraftTree | null {
    const toks = ctx.tokens;
    if (toks.length < 2 || ctx.maxNodes <= 0) return null;
    const st = this.state(ctx.seqId);
    // adapt: the whole prompt once, then the recent window every step
    const from = st.seenPrompt ? Math.max(0, toks.length - ADED_WINDOW) : 0;
    for (let i = from; i + 2 < toks.length; i++) this.boost(st, toks[i], toks[i + 1], toks[i + 2]);
    st.seenPrompt = true;
    st.steps++;
    const root: Node = { token: toks[toks.length - 1], a: toks[toks.length - 2], prior: 1, visits: 0, value: 0, depth: 0, parent: null, children: null };
    // rollouts depend on the request's own history only: identical requests draft identically
    const rng = new Rng(0x5eed + st.steps * 7919 + toks[toks.length - 1]);
    for (let it = 0; it < ADED_ITERATIONS; it++) this.iterate(st, root, rng);
    return this.extract(root, ctx.maxNodes);
  }

  private expand(st: RequestState, n: Node): Node[] {
    if (n.children === null) {
      n.children = this.successors(st, n.a, n.token).map((s) => ({
        token: s.token, a: n.token, prior: s.weight, visits: 0, value: 0, depth: n.depth + 1, parent: n, children: null,
      }));
    }
    return n.children;
  }

  private iterate(st: RequestState, root: Node, rng: Rng): void {
    let node = root;
    let reward = 1;
    // selection / expansion down to the depth limit
    while (node.depth < ADED_DEPTH) {
      const kids = this.expand(st, node);
      if (kids.length === 0) break;
      const explore = (ADED_C1 + Math.log((node.visits + ADED_C2 + 1) / ADED_C2)) * Math.sqrt(node.visits);
      let best = kids[0];
      let bestScore = -Infinity;
      for (const k of kids) {
        const q = k.visits ? k.value / k.visits : 0;
        const score = q + (explore * k.prior) / (1 + k.visits);
        if (score > bestScore) {
          bestScore = score;
          best = k;
        }
      }
      node = best;
      reward += node.prior;
      if (node.visits === 0) break; // new leaf: finish with a rollout
    }
    // rollout: sample successors by weight until the path is ADED_DEPTH long
    let a = node.a;
    let b = node.token;
    for (let d = node.depth; d < ADED_DEPTH; d++) {
      const succ = this.successors(st, a, b);
      if (succ.length === 0) break;
      let total = 0;
      for (const s of succ) total += s.weight;
      let r = rng.next() * total;
      let pick = succ[succ.length - 1];
      for (const s of succ) {
        r -= s.weight;
        if (r < 0) {
          pick = s;
          break;
        }
      }
      reward += pick.weight;
      a = b;
      b = pick.token;
    }
    for (let n: Node | null = node; n; n = n.parent) {
      n.visits++;
      n.value += reward;
    }
  }

  /** The most visited nodes (visits never exceed the parent's, so the set is ancestor-closed),
   *  in breadth-first order. */
  private extract(root: Node, maxNodes: number): DraftTree | null {
    const all: Node[] = [];
    const queue: Node[] = [root];
    while (queue.length) {
      const n = queue.shift()!;
      for (const k of n.children ?? []) {
        if (k.visits > 0) {
          all.push(k);
          queue.push(k);
        }
      }
    }
    const chosen = new Set(all.sort((x, y) => y.visits - x.visits || x.depth - y.depth).slice(0, maxNodes));
    // keep closure even on ties broken against a parent
    for (const n of [...chosen]) for (let p = n.parent; p && p !== root; p = p.parent) chosen.add(p);
    const ordered = [...chosen].sort((x, y) => x.depth - y.depth).slice(0, maxNodes);
    if (ordered.length === 0) return null;
    const index = new Map<Node, number>();
    const tokens: number[] = [];
    const parents: number[] = [];
    for (const n of ordered) {
      if (n.parent !== root && !index.has(n.parent!)) continue;
      index.set(n, tokens.length);
      tokens.push(n.token);
      parents.push(n.parent === root ? -1 : index.get(n.parent!)!);
    }
    return { tokens: Int32Array.from(tokens), parents: Int32Array.from(parents), kind: 'deterministic' };
  }
}
