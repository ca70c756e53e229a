import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BatchPast } from '../../src/kvcache/batch-past.ts';
import { PagedKvCache, SAQ_DEFAULTS } from '../../src/kvcache/paged.ts';

const shape = { layers: 3, kvHeads: 2, headDim: 2 };
const W = shape.kvHeads * shape.headDim;
const budget = 200 * 8 * shape.layers * 2 * W * 4; // 200 blocks of 8 tokens

function rows(tag: number, n: number, sign: number): Float32Array[] {
  return Array.from({ length: shape.layers }, (_, l) => Float32Array.from({ length: n * W }, (_, i) => sign * (tag * 1000 + l * 100 + i)));
}

type Op =
  | { kind: 'append'; seq: number; n: number }
  | { kind: 'truncate'; seq: number; keep: number }
  | { kind: 'release'; seq: number }
  | { kind: 'batch'; seqs: number[] };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('append' as const), seq: fc.integer({ min: 0, max: 7 }), n: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), seq: fc.integer({ min: 0, max: 7 }), keep: fc.integer({ min: 0, max: 60 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), seq: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('batch' as const), seqs: fc.uniqueArray(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 8 }) }) },
);

/** A staircase short enough that the property test's sequences go through several demotions. */
const SMALL_SAQ = { ...SAQ_DEFAULTS, window: 8, step: 8, bits: [8, 5, 3], valueGroup: 2, layers: undefined };

for (const saq of [null, SMALL_SAQ]) test(`the kept batch past always equals a fresh gather of every row, in the order it reports (${saq ? 'SAQ' : 'fp32'})`, () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 80 }), fc.integer({ min: 0, max: 1 }), (ops, from) => {
      const kv = new PagedKvCache(shape, budget, 8, saq);
      const view = new BatchPast(kv, from, shape.layers);
      let tag = 1;
      for (const op of ops) {
        if (op.kind === 'append') {
          const src = rows(tag++, op.n, 1);
          kv.append(op.seq, src, rows(tag, op.n, -1), Array.from({ length: op.n }, (_, i) => i));
        } else if (op.kind === 'truncate') {
          // only the fp32 window can be rolled back
          const len = kv.length(op.seq);
          if (len > 0) kv.truncate(op.seq, Math.max(len - (kv.usage(op.seq)?.tokensByTier.fp32 ?? 0), Math.min(op.keep, len)));
        } else if (op.kind === 'release') {
          kv.release(op.seq);
        } else {
          const v = view.prepare(op.seqs);
          assert.deepEqual([...v.order].sort((a, b) => a - b), op.seqs.map((_, i) => i), 'order is a permutation');
          const P = v.stride;
          const lens = op.seqs.map((id) => kv.length(id));
          assert.ok(P >= Math.max(...lens), 'stride holds the longest sequence');
          const L = shape.layers - from;
          const refK = Array.from({ length: L }, () => new Float32Array(op.seqs.length * P * W));
          const refV = Array.from({ length: L }, () => new Float32Array(op.seqs.length * P * W));
          v.order.forEach((i, b) => kv.gatherLayers(op.seqs[i], from, shape.layers, refK, refV, b, P));
          for (let l = 0; l < L; l++) {
            assert.equal(v.keys[l].length, op.seqs.length * P * W);
            // head-major: each head of batch row b holds the sequence's rows at positions [0, len)
            v.order.forEach((i, b) => {
              for (let h = 0; h < shape.kvHeads; h++) {
                const at = (b * shape.kvHeads + h) * P * shape.headDim;
                const n = lens[i] * shape.headDim;
                assert.deepEqual(v.keys[l].subarray(at, at + n), refK[l].subarray(at, at + n));
                assert.deepEqual(v.values[l].subarray(at, at + n), refV[l].subarray(at, at + n));
              }
            });
          }
        }
      }
    }),
    { numRuns: 200 },
  );
});

test('a steady batch copies only the rows committed since the last step', () => {
  const kv = new PagedKvCache(shape, budget, 8);
  const view = new BatchPast(kv, 0, shape.layers);
  for (const id of [1, 2, 3]) kv.append(id, rows(id, 10, 1), rows(id, 10, -1), Array.from({ length: 10 }, (_, i) => i));
  assert.equal(view.prepare([1, 2, 3]).copiedRows, 30);
  kv.append(2, rows(9, 3, 1), rows(9, 3, -1), [0, 1, 2]);
  const v = view.prepare([3, 1, 2]);
  assert.equal(v.copiedRows, 3);
  assert.deepEqual(v.order, [1, 2, 0], 'sequences keep their slots whatever order they are asked in');
  // one leaves: the last slot moves into its hole without copying from the cache
  const w = view.prepare([3, 2]);
  assert.equal(w.copiedRows, 0);
  assert.deepEqual(w.order.map((i) => [3, 2][i]).sort(), [2, 3]);
  // truncation (a new generation) makes the view copy that sequence again
  kv.truncate(3, 4);
  assert.equal(view.prepare([3, 2]).copiedRows, 4);
});

test('over SAQ, a steady batch copies the new rows and only the stairs a demotion rewrote', () => {
  const kv = new PagedKvCache(shape, budget, 8, SMALL_SAQ);
  const view = new BatchPast(kv, 0, shape.layers);
  let tag = 1;
  const add = (n: number) => kv.append(1, rows(tag++, n, 1), rows(tag, n, -1), Array.from({ length: n }, (_, i) => i));
  add(15); // window 8 + step 8 = 16: no demotion yet
  assert.equal(kv.tokensUntilRewrite(1), 1);
  assert.equal(view.prepare([1]).copiedRows, 15);
  add(1); // the 16th row: rows [0, 8) become the first stair
  assert.equal(kv.rewrites(1), 1);
  assert.deepEqual(kv.rewrittenSince(1, 0), [[0, 8]]);
  assert.equal(view.prepare([1]).copiedRows, 8 + 1);
  assert.equal(kv.tokensUntilRewrite(1), 8);
  add(8); // a second stair at 8 bits; the first steps down to 5 bits: both rewritten
  assert.deepEqual(kv.rewrittenSince(1, 1), [[0, 16]]);
  assert.equal(view.prepare([1]).copiedRows, 16 + 8);
  add(3);
  assert.equal(view.prepare([1]).copiedRows, 3, 'no demotion: only the new rows');
});

test('an fp32 cache never rewrites committed rows', () => {
  const kv = new PagedKvCache(shape, budget, 8);
  kv.append(1, rows(1, 40, 1), rows(2, 40, -1), Array.from({ length: 40 }, (_, i) => i));
  assert.equal(kv.tokensUntilRewrite(1), Infinity);
  assert.equal(kv.rewrites(1), 0);
});
