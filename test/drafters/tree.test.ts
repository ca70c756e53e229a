// Tree building shared by the head drafters: rerank keeps an ancestor-closed, breadth-first tree of
// the best candidates; sharpen re-ranks scores without reordering a row.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { rerank, sharpen, type Candidate } from '../../src/drafters/shared/tree.ts';

test('sharpen keeps each row in order and renormalises it over its k entries', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.float({ min: -20, max: 0, noNaN: true }), { minLength: 4, maxLength: 4 }), { minLength: 1, maxLength: 5 }),
      fc.constantFrom(1.5, 2, 3),
      (rows, beta) => {
        const k = 4;
        const lps = Float32Array.from(rows.flat());
        const before = Float32Array.from(lps);
        sharpen(lps, k, beta);
        for (let o = 0; o < lps.length; o += k) {
          const sum = [0, 1, 2, 3].reduce((a, c) => a + Math.exp(lps[o + c]), 0);
          assert.ok(Math.abs(sum - 1) < 1e-4, `row sums to ${sum}`);
          for (let a = 0; a < k; a++)
            for (let b = 0; b < k; b++) if (before[o + a] > before[o + b] + 1e-3) assert.ok(lps[o + a] >= lps[o + b]);
        }
      },
    ),
  );
});

test('sharpening moves mass to the top choice; beta 1 changes nothing', () => {
  const row = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
  const same = Float32Array.from(row);
  sharpen(same, 4, 1);
  assert.deepEqual(same, row);
  sharpen(row, 4, 2);
  // p^2 renormalised: 0.25 / (0.25 + 0.09 + 0.0225 + 0.0025)
  assert.ok(Math.abs(Math.exp(row[0]) - 0.25 / 0.365) < 1e-5);
});

test('sharpened scores give a deeper tree for the same node budget', () => {
  // two children per node, each row [0.6, 0.4]: with raw scores a budget of 2 goes to both
  // depth-1 siblings; sharpened (0.69 / 0.31) the top child's own child outranks the sibling
  const build = (beta: number) => {
    const row = Float32Array.from([Math.log(0.6), Math.log(0.4)]);
    sharpen(row, 2, beta);
    const cands: Candidate[] = [
      { token: 1, parent: -1, score: row[0], depth: 1 },
      { token: 2, parent: -1, score: row[1], depth: 1 },
    ];
    cands.push({ token: 3, parent: 0, score: row[0] * 2, depth: 2 });
    return rerank(cands, 2)!;
  };
  assert.deepEqual([...build(1).parents], [-1, -1]);
  assert.deepEqual([...build(2).tokens], [1, 3]);
  assert.deepEqual([...build(2).parents], [-1, 0]);
});
