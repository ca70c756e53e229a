// The Chimera drafter on the real default model: target hidden states come from the target's own
// ONNX graph, the drafter's proposals are checked against direct calls of its exported graphs, and
// its agreement with the target's greedy token against the manifest.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import ort from 'onnxruntime-node';
import { CHIMERA_BRANCH, ChimeraDrafter } from '../../src/drafters/chimera/index.ts';
import { DrafterUnavailable, type DraftContext, type DraftTree } from '../../src/drafters/Drafter.ts';
import { loadModelConfig, type ModelConfig } from '../../src/model/config.ts';
import { chainInput, Runner } from '../../src/worker/runner.ts';
import { TextCodec } from '../../src/model/text.ts';
import { DEFAULT_MODEL_DIR } from '../helpers/model.ts';

const N = 160; // tokens of held-out text run through the target

let cfg: ModelConfig;
let tokens: number[];
let hidden: Float32Array; // [N, D] post-final-norm target states
let greedy: number[]; // target argmax at each row
let D: number;

before(async () => {
  cfg = loadModelConfig(DEFAULT_MODEL_DIR);
  D = cfg.hiddenSize;
  const codec = new TextCodec(DEFAULT_MODEL_DIR);
  tokens = codec.encode(readFileSync(path.join(DEFAULT_MODEL_DIR, 'heldout.txt'), 'utf8').slice(0, 4000)).slice(0, N);
  assert.equal(tokens.length, N);
  const runner = await Runner.create(cfg, { provider: 'cpu', dtype: 'fp32', threads: 1 });
  const out = await runner.forward(chainInput(cfg, tokens, 0));
  hidden = out.hidden!;
  greedy = [];
  for (let i = 0; i < N; i++) {
    const row = out.logits.subarray(i * cfg.vocabSize, (i + 1) * cfg.vocabSize);
    let best = 0;
    for (let v = 1; v < row.length; v++) if (row[v] > row[best]) best = v;
    greedy.push(best);
  }
  await runner.release();
});

/** Context for a sequence whose committed rows are [0, L) and root tokens[L]; history from `from`. */
function ctxAt(seqId: number, L: number, from: number, maxNodes: number): DraftContext {
  return {
    seqId, maxNodes,
    tokens: tokens.slice(0, L + 1),
    hidden: hidden.slice((L - 1) * D, L * D),
    history: { from, rows: hidden.slice(from * D, L * D) },
  };
}

/** Direct calls of the exported graphs, independent of the drafter's bookkeeping. */
class Graphs {
  private constructor(
    readonly project: ort.InferenceSession,
    readonly draft: ort.InferenceSession,
    readonly kv: number,
    readonly hd: number,
  ) {}

  static async load(K: number): Promise<Graphs> {
    const dir = path.join(DEFAULT_MODEL_DIR, 'chimera');
    const m = JSON.parse(readFileSync(path.join(dir, 'chimera.json'), 'utf8'));
    const externalData = [
      { path: 'chimera.bin', data: readFileSync(path.join(dir, 'chimera.bin')) },
      { path: 'embed.f32', data: readFileSync(path.join(DEFAULT_MODEL_DIR, 'heads', 'embed.f32')) },
    ];
    const project = await ort.InferenceSession.create(path.join(dir, 'chimera_project.onnx'), { externalData });
    const draft = await ort.InferenceSession.create(path.join(dir, `chimera_draft${K}.onnx`), { externalData });
    return new Graphs(project, draft, m.kv_heads, m.head_dim);
  }

  /** Drafts for the root at L: rows [0, cached) through the project graph, [cached, L) as new rows. */
  async run(L: number, cached: number) {
    const ctx = await this.project.run({
      hidden: new ort.Tensor('float32', hidden.slice(0, cached * D), [cached, D]),
      positions: new ort.Tensor('int64', BigInt64Array.from({ length: cached }, (_, i) => BigInt(i)), [cached]),
    });
    const n = L - cached;
    const out = await this.draft.run({
      ctx_keys: ctx.keys.reshape([1, cached, this.kv, this.hd]),
      ctx_values: ctx.values.reshape([1, cached, this.kv, this.hd]),
      ctx_bias: new ort.Tensor('float32', new Float32Array(cached), [1, cached]),
      new_hidden: new ort.Tensor('float32', hidden.slice(cached * D, L * D), [1, n, D]),
      new_positions: new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(cached + i)), [1, n]),
      new_bias: new ort.Tensor('float32', new Float32Array(n), [1, n]),
      hidden_last: new ort.Tensor('float32', hidden.slice((L - 1) * D, L * D), [1, D]),
      trigram_ids: new ort.Tensor('int64', BigInt64Array.from([L - 2, L - 1, L], (p) => BigInt(tokens[p])), [1, 3]),
      positions: new ort.Tensor('int64', BigInt64Array.of(BigInt(L)), [1]),
    });
    const [, K, k] = out.topk_ids.dims as number[];
    const ids = Array.from(out.topk_ids.data as BigInt64Array, Number);
    return Array.from({ length: K }, (_, d) => ids.slice(d * k, (d + 1) * k)); // per depth
  }
}

function depthOf(tree: DraftTree, i: number): number {
  let d = 1;
  for (let p = tree.parents[i]; p >= 0; p = tree.parents[p]) d++;
  return d;
}

function pathOf(tree: DraftTree, i: number): number[] {
  const toks: number[] = [];
  for (let n = i; n >= 0; n = tree.parents[n]) toks.push(tree.tokens[n]);
  return toks.reverse();
}

describe('chimera drafter', () => {
  test('is unavailable without its files', async () => {
    await assert.rejects(ChimeraDrafter.load({ modelDir: '/nonexistent' }), DrafterUnavailable);
  });

  test("proposals are the draft graph's greedy path and its siblings, in one call", async () => {
    const drafter = await ChimeraDrafter.load({ modelDir: DEFAULT_MODEL_DIR });
    const K = drafter.manifest.draft_depths;
    const g = await Graphs.load(K);
    const L = 120;
    const depths = await g.run(L, 100);
    const [one] = await drafter.propose([ctxAt(1, L, 0, 1)]);
    assert.deepEqual(Array.from(one!.tokens), [depths[0][0]]);
    drafter.release(1);

    const [tree] = await drafter.propose([ctxAt(2, L, 0, 12)]);
    assert.ok(tree && tree.tokens.length <= 12);
    let deep = 0;
    for (let i = 0; i < tree.tokens.length; i++) {
      const path = pathOf(tree, i);
      const d = path.length - 1;
      assert.ok(depths[d].slice(0, CHIMERA_BRANCH).includes(path[d]), `node ${i} is not a top-${CHIMERA_BRANCH} candidate of depth ${d + 1}`);
      for (let a = 0; a < d; a++) assert.equal(path[a], depths[a][0], `node ${i}: ancestors are the greedy path`);
      if (d > 0) deep++;
    }
    assert.ok(deep > 0, 'the tree has nodes below depth 1');
    drafter.release(2);
  });

  test('trees are topologically ordered, within maxNodes and depth, with distinct siblings', async () => {
    const drafter = await ChimeraDrafter.load({ modelDir: DEFAULT_MODEL_DIR });
    for (const maxNodes of [1, 3, 8, 16]) {
      const [tree] = await drafter.propose([ctxAt(7, 90, 0, maxNodes)]);
      drafter.release(7);
      assert.ok(tree && tree.tokens.length >= 1 && tree.tokens.length <= maxNodes);
      assert.equal(tree.kind, 'deterministic');
      const seen = new Set<string>();
      for (let i = 0; i < tree.tokens.length; i++) {
        assert.ok(tree.parents[i] < i);
        assert.ok(depthOf(tree, i) <= drafter.manifest.draft_depths);
        const key = `${tree.parents[i]}:${tree.tokens[i]}`;
        assert.ok(!seen.has(key), 'duplicate sibling');
        seen.add(key);
      }
    }
  });

  test('context cache grows with history, incremental equals one-shot, is freed on release', async () => {
    const a = await ChimeraDrafter.load({ modelDir: DEFAULT_MODEL_DIR });
    const b = await ChimeraDrafter.load({ modelDir: DEFAULT_MODEL_DIR });
    let from = 0;
    for (const L of [5, 6, 9, 40, 41, 100]) {
      const [inc] = await a.propose([ctxAt(3, L, from, 6)]);
      from = L;
      assert.equal(a.cachedRows(3), L);
      const [once] = await b.propose([ctxAt(4, L, 0, 6)]);
      b.release(4);
      assert.deepEqual(inc, once, `root at ${L}`);
    }
    // a step where the drafter was not asked: the next history covers both steps' rows
    const [late] = await a.propose([ctxAt(3, 130, 100, 6)]);
    assert.equal(a.cachedRows(3), 130);
    assert.deepEqual(late, (await b.propose([ctxAt(4, 130, 0, 6)]))[0]);
    a.release(3);
    assert.equal(a.cachedRows(3), 0);
    // a proposal without a draft (maxNodes 0) still caches its rows
    assert.equal((await a.propose([ctxAt(6, 50, 0, 0)]))[0], null);
    assert.equal(a.cachedRows(6), 50);
    assert.deepEqual((await a.propose([ctxAt(6, 60, 50, 6)]))[0], (await b.propose([ctxAt(8, 60, 0, 6)]))[0]);
    // rows missing from the history are an error (the engine then decodes without this drafter)
    await a.propose([ctxAt(5, 10, 0, 4)]);
    await assert.rejects(Promise.resolve(a.propose([ctxAt(5, 20, 12, 4)])), /history rows from 12/);
  });

  test('a batch of sequences with different contexts gets the trees each would get alone', async () => {
    const drafter = await ChimeraDrafter.load({ modelDir: DEFAULT_MODEL_DIR });
    const alone = [];
    for (const [i, L] of [30, 75, 140].entries()) {
      alone.push((await drafter.propose([ctxAt(10 + i, L, 0, 2 + 3 * i)]))[0]);
      drafter.release(10 + i);
    }
    const together = await drafter.propose([30, 75, 140].map((L, i) => ctxAt(20 + i, L, 0, 2 + 3 * i)));
    assert.deepEqual(together, alone);
  });

  test("depth-1 top child agrees with the target's greedy token about as often as the manifest says", async () => {
    const drafter = await ChimeraDrafter.load({ modelDir: DEFAULT_MODEL_DIR });
    let hits = 0;
    let n = 0;
    let from = 0;
    for (let L = 20; L < N - 1; L++) {
      const [tree] = await drafter.propose([ctxAt(9, L, from, 1)]);
      from = L;
      if (tree && tree.tokens[0] === greedy[L]) hits++;
      n++;
    }
    const rate = hits / n;
    const manifest = drafter.manifest.heldout_top1[0];
    assert.ok(rate > manifest - 0.15, `agreement ${rate.toFixed(3)} vs held-out ${manifest}`);
  });
});

test('model files are where the manifest says', () => {
  const dir = path.join(DEFAULT_MODEL_DIR, 'chimera');
  const m = JSON.parse(readFileSync(path.join(dir, 'chimera.json'), 'utf8'));
  for (const f of Object.keys(m.files)) assert.ok(existsSync(path.join(dir, f)), f);
});
