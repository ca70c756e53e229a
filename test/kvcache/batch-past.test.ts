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

test('the kept batch past always equals a fresh gather of every row, in the order it reports', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 80 }), fc.integer({ min: 0, max: 1 }), (ops, from) => {
      const kv = new PagedKvCache(shape, budget, 8);
      const view = new BatchPast(kv, from, shape.layers);
      let tag = 1;
      for (const op of ops) {
        if (op.kind === 'append') {
          const src = rows(tag++, op.n, 1);
          kv.append(op.seq, src, rows(tag, op.n, -1), Array.from({ length: op.n }, (_, i) => i));
        } else if (op.kind === 'truncate') {
          if (kv.length(op.seq) > 0) kv.truncate(op.seq, Math.min(op.keep, kv.length(op.seq)));
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

test('caches that rewrite committed rows (SAQ) get no kept view', () => {
  const kv = new PagedKvCache(shape, budget, 8, { ...SAQ_DEFAULTS, step: 8, valueGroup: 2 });
  assert.equal(kv.rowsStable, false);
  assert.throws(() => new BatchPast(kv, 0, shape.layers), /fp32/);
});
