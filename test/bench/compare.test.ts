// bench:compare matches the ratios two result files report and measures how far they moved.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compare, ratios } from '../../bench/compare.ts';

test('bench results: speedups of every method but plain; loadtest results: median ratios', () => {
  const bench = { results: { plain: { overall: { speedup: 1 } }, aded: { overall: { speedup: 1.6 }, code: { speedup: 2 } } } };
  assert.deepEqual(ratios(bench), [{ name: 'aded / overall', value: 1.6 }, { name: 'aded / code', value: 2 }]);
  const load = { results: { none: { 1: { aggregateTokensPerSecond: 300 } }, 'prompt-lookup': { 1: { ratioMedian: 1.5 } } } };
  assert.deepEqual(ratios(load), [{ name: 'prompt-lookup / 1', value: 1.5 }]);
});

test('changes are relative to the first run and only shared ratios are compared', () => {
  const rows = compare([{ name: 'x', value: 2 }, { name: 'y', value: 1 }], [{ name: 'x', value: 2.2 }, { name: 'z', value: 9 }]);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].name, 'x');
  assert.ok(Math.abs(rows[0].change - 0.1) < 1e-12);
});
