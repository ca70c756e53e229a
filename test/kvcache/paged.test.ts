import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PagedKvCache } from '../../src/kvcache/paged.ts';
import { tokenMajor } from '../helpers/kv.ts';

const shape = { layers: 2, kvHeads: 2, headDim: 3 };
const W = shape.kvHeads * shape.headDim;

/** A source batch of `n` rows whose values encode (tag, row, column) so copies are checkable. */
function rows(tag: number, n: number): Float32Array[] {
  return Array.from({ length: shape.layers }, (_, l) => Float32Array.from({ length: n * W }, (_, i) => tag * 1000 + l * 100 + i));
}

type Op = { kind: 'append'; seq: number; n: number } | { kind: 'truncate'; seq: number; keep: number } | { kind: 'release'; seq: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('append' as const), seq: fc.integer({ min: 0, max: 4 }), n: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('truncate' as const), seq: fc.integer({ min: 0, max: 4 }), keep: fc.integer({ min: 0, max: 100 }) }),
  fc.record({ kind: fc.constant('release' as const), seq: fc.integer({ min: 0, max: 4 }) }),
);

test('random interleavings: contents match a reference, no block ever leaks', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const budget = 20 * 8 * shape.layers * 2 * W * 4; // 20 blocks of 8 tokens
      const kv = new PagedKvCache(shape, budget, 8);
      const ref = new Map<number, number[][]>(); // seq -> per token [layer0 row..., layer1 row...]
      let tag = 1;
      for (const op of ops) {
        if (op.kind === 'append') {
          const src = rows(tag++, op.n);
          const pick = Array.from({ length: op.n }, (_, i) => op.n - 1 - i); // reversed: order must be honoured
          const fits = kv.canGrow(op.seq, op.n);
          const ok = kv.append(op.seq, src, src, pick);
          assert.equal(ok, fits);
          if (ok) {
            const list = ref.get(op.seq) ?? [];
            for (const r of pick) list.push(src.flatMap((a) => Array.from(a.subarray(r * W, (r + 1) * W))));
            ref.set(op.seq, list);
          }
        } else if (op.kind === 'truncate') {
          const len = kv.length(op.seq);
          const keep = Math.min(op.keep, len);
          kv.truncate(op.seq, keep);
          ref.get(op.seq)?.splice(keep);
        } else {
          kv.release(op.seq);
          ref.delete(op.seq);
        }
        // accounting: free blocks = total - blocks needed by live sequences
        let needed = 0;
        for (const [s, list] of ref) {
          assert.equal(kv.length(s), list.length);
          needed += Math.ceil(list.length / 8);
        }
        assert.equal(kv.freeBlocks(), kv.numBlocks - needed);
      }
      // contents
      for (const [s, list] of ref) {
        const P = list.length;
        const outK = Array.from({ length: shape.layers }, () => new Float32Array(2 * P * W));
        const outV = Array.from({ length: shape.layers }, () => new Float32Array(2 * P * W));
        kv.gather(s, outK, outV, 1, P);
        for (let l = 0; l < shape.layers; l++) {
          const got = tokenMajor(outK[l], shape.kvHeads, P, shape.headDim, 1);
          for (let t = 0; t < P; t++) assert.deepEqual(Array.from(got.subarray(t * W, (t + 1) * W)), list[t].slice(l * W, (l + 1) * W));
        }
      }
      for (const s of [...ref.keys()]) kv.release(s);
      assert.equal(kv.freeBlocks(), kv.numBlocks);
    }),
    { numRuns: 300 },
  );
});

test('gathers write the head-major past: every head of a row at (row * kvHeads + h) * past + t', () => {
  const kv = new PagedKvCache(shape, 1 << 20, 4);
  const src = rows(3, 10);
  kv.append(1, src, src, [...Array(10).keys()]);
  const P = 12; // a longer past than the sequence: rows 10 and 11 stay untouched
  const all = Array.from({ length: 2 }, () => new Float32Array(2 * P * W).fill(-1));
  kv.gather(1, all, all.map((a) => a.slice()), 1, P);
  for (let l = 0; l < 2; l++)
    for (let t = 0; t < P; t++)
      for (let h = 0; h < shape.kvHeads; h++)
        for (let d = 0; d < shape.headDim; d++) {
          const got = all[l][((1 * shape.kvHeads + h) * P + t) * shape.headDim + d];
          assert.equal(got, t < 10 ? src[l][t * W + h * shape.headDim + d] : -1, `layer ${l} row ${t} head ${h} dim ${d}`);
        }
  assert.ok(all[0].subarray(0, P * W).every((x) => x === -1), 'batch row 0 untouched');
  // a range of rows lands where the full gather puts it, and nothing else is written
  const part = Array.from({ length: 1 }, () => new Float32Array(2 * P * W).fill(-1));
  kv.gatherRange(1, 1, 2, 3, 7, part, part.map((a) => a.slice()), 1, P);
  for (let i = 0; i < 2 * P * W; i++) {
    const t = Math.floor(i / shape.headDim) % P;
    const inRow1 = i >= P * W;
    assert.equal(part[0][i], inRow1 && t >= 3 && t < 7 ? all[1][i] : -1, `index ${i}`);
  }
});

test('rollback frees whole blocks and the budget is in bytes', () => {
  const bytesPerToken = shape.layers * 2 * W * 4;
  const kv = new PagedKvCache(shape, bytesPerToken * 16 * 3, 16);
  assert.equal(kv.numBlocks, 3);
  const src = rows(1, 40);
  assert.ok(kv.append(7, src, src, [...Array(40).keys()]));
  assert.equal(kv.freeBlocks(), 0);
  assert.equal(kv.canGrow(8, 1), false);
  kv.truncate(7, 16);
  assert.equal(kv.freeBlocks(), 2);
  assert.equal(kv.stats().tokens, 16);
  assert.equal(kv.stats().bytesInUse, bytesPerToken * 16);
  kv.release(7);
  assert.equal(kv.stats().bytesInUse, 0);
});
