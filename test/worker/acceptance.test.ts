// Unit tests of the acceptance rules on hand-made distributions: each lossless rule must emit
// tokens distributed exactly as the target p, whatever the drafts were.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyGreedy, verifySampled, type VerifyTree } from '../../src/worker/acceptance.ts';
import { Rng } from '../../src/util/rng.ts';
import { sampleFrom } from '../../src/worker/sampling.ts';
import { chiSquare, chiSquareCritical } from '../helpers/stats.ts';

const V = 6;
// target distributions: at the root, and below each first token (second position)
const pRoot = new Float64Array([0.35, 0.25, 0.2, 0.1, 0.07, 0.03]);
const pChild = (first: number) => {
  const p = new Float64Array(V);
  for (let i = 0; i < V; i++) p[i] = 1 + ((i + 2 * first) % V);
  const s = p.reduce((a, b) => a + b, 0);
  return p.map((x) => x / s);
};
// a drafter distribution that disagrees with p
const q = new Float64Array([0.05, 0.1, 0.15, 0.2, 0.25, 0.25]);

function expectedPairs(): Map<string, number> {
  const m = new Map<string, number>();
  for (let a = 0; a < V; a++) {
    const pc = pChild(a);
    for (let b = 0; b < V; b++) m.set(`${a},${b}`, pRoot[a] * pc[b]);
  }
  return m;
}

/** Runs a verification and returns the first two emitted tokens (accepted path tokens then bonus,
 *  continuing with plain sampling from p when the step emitted only one). */
function firstTwo(tree: VerifyTree, rng: Rng): [number, number] {
  const r = verifySampled(tree, (node) => (node === 0 ? pRoot : pChild(tree.tokens[node])), rng);
  const emitted = [...r.path.slice(1).map((n) => tree.tokens[n]), r.bonus];
  if (emitted.length === 1) emitted.push(sampleFrom(pChild(emitted[0]), rng));
  return [emitted[0], emitted[1]];
}

function assertMatchesTarget(samples: [number, number][], label: string) {
  const obs = new Map<string, number>();
  for (const [a, b] of samples) obs.set(`${a},${b}`, (obs.get(`${a},${b}`) ?? 0) + 1);
  const [stat, df] = chiSquare(obs, expectedPairs(), samples.length);
  const crit = chiSquareCritical(df, 1e-4);
  assert.ok(stat < crit, `${label}: chi-square ${stat.toFixed(1)} >= critical ${crit.toFixed(1)} (df ${df})`);
}

const N = 30000;

test('deterministic top-k tree (q = 1 rule) reproduces p over two positions', () => {
  const rng = new Rng(7);
  // root children: the drafter's top-3 under q (4, 5, 3), each with its own top-2 child
  const tree: VerifyTree = {
    tokens: Int32Array.from([9, 4, 5, 3, 1, 2, 0, 5]),
    parents: Int32Array.from([-1, 0, 0, 0, 1, 1, 2, 3]),
    kind: 'deterministic',
  };
  const samples: [number, number][] = [];
  for (let i = 0; i < N; i++) samples.push(firstTwo(tree, rng));
  assertMatchesTarget(samples, 'deterministic tree');
});

test('sampled chain (Leviathan/Chen) reproduces p over two positions', () => {
  const rng = new Rng(11);
  const samples: [number, number][] = [];
  for (let i = 0; i < N; i++) {
    const x1 = sampleFrom(q, rng);
    const x2 = sampleFrom(q, rng);
    const probs = new Float32Array(3 * V);
    probs.set(q, V);
    probs.set(q, 2 * V);
    const tree: VerifyTree = { tokens: Int32Array.from([9, x1, x2]), parents: Int32Array.from([-1, 0, 1]), kind: 'sampled', draftProbs: probs };
    samples.push(firstTwo(tree, rng));
  }
  assertMatchesTarget(samples, 'sampled chain');
});

test('sampled multi-candidate tree (children i.i.d. from q) reproduces p', () => {
  const rng = new Rng(13);
  const samples: [number, number][] = [];
  for (let i = 0; i < N; i++) {
    const c = [sampleFrom(q, rng), sampleFrom(q, rng), sampleFrom(q, rng)];
    const probs = new Float32Array(4 * V);
    for (let j = 1; j <= 3; j++) probs.set(q, j * V);
    const tree: VerifyTree = { tokens: Int32Array.from([9, ...c]), parents: Int32Array.from([-1, 0, 0, 0]), kind: 'sampled', draftProbs: probs };
    samples.push(firstTwo(tree, rng));
  }
  // duplicates among i.i.d. children stay separate candidates; the law must hold
  assertMatchesTarget(samples, 'sampled tree');
});

test('mixing the rules is detectably wrong (the test has power)', () => {
  // treat top-k children as if sampled from q: p/q acceptance on deterministic children is biased
  const rng = new Rng(17);
  const probs = new Float32Array(4 * V);
  for (let j = 1; j <= 3; j++) probs.set(q, j * V);
  const tree: VerifyTree = { tokens: Int32Array.from([9, 4, 5, 3]), parents: Int32Array.from([-1, 0, 0, 0]), kind: 'sampled', draftProbs: probs };
  const obs = new Map<string, number>();
  for (let i = 0; i < N; i++) {
    const r = verifySampled(tree, () => pRoot, rng);
    const first = r.path.length > 1 ? tree.tokens[r.path[1]] : r.bonus;
    obs.set(String(first), (obs.get(String(first)) ?? 0) + 1);
  }
  const exp = new Map<string, number>();
  pRoot.forEach((p, i) => exp.set(String(i), p));
  const [stat, df] = chiSquare(obs, exp, N);
  assert.ok(stat > chiSquareCritical(df, 1e-4), `expected a biased law, chi-square ${stat.toFixed(1)}`);
});

test('greedy: longest path of argmax matches, bonus from the stop node', () => {
  // root → 3 → 1 matches, the child of 1 (token 4) does not match argmax 2
  const tree: VerifyTree = {
    tokens: Int32Array.from([0, 5, 3, 1, 4, 1]),
    parents: Int32Array.from([-1, 0, 0, 2, 3, 1]),
    kind: 'deterministic',
  };
  const argmaxAt: Record<number, number> = { 0: 3, 2: 1, 3: 2 };
  const r = verifyGreedy(tree, (n) => argmaxAt[n]);
  assert.deepEqual(r.path, [0, 2, 3]);
  assert.equal(r.bonus, 2);
});

test('greedy: nothing accepted gives the root argmax as bonus', () => {
  const tree: VerifyTree = { tokens: Int32Array.from([0, 5]), parents: Int32Array.from([-1, 0]), kind: 'deterministic' };
  const r = verifyGreedy(tree, () => 2);
  assert.deepEqual(r.path, [0]);
  assert.equal(r.bonus, 2);
});

test('residual after rejection: a sampled draft of a token p never emits cannot leak', () => {
  // p puts no mass on token 5; the draft always proposes 5; output must never be 5
  const rng = new Rng(3);
  const probs = new Float32Array(2 * V);
  probs.set([0, 0, 0, 0, 0, 1], V);
  for (let i = 0; i < 2000; i++) {
    const r = verifySampled({ tokens: Int32Array.from([9, 5]), parents: Int32Array.from([-1, 0]), kind: 'sampled', draftProbs: probs }, () => pRoot.map((x, j) => (j === 5 ? 0 : x / 0.97)), rng);
    assert.equal(r.path.length, 1);
    assert.notEqual(r.bonus, 5);
  }
});

test('a tree whose parent comes after the child is rejected', () => {
  const tree: VerifyTree = { tokens: Int32Array.from([0, 1, 2]), parents: Int32Array.from([-1, 2, 0]), kind: 'deterministic' };
  assert.throws(() => verifyGreedy(tree, () => 1), /topologically/);
});
