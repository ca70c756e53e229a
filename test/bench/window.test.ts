// The load test's steady-state window: tokens are counted where they were streamed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { tokensWithin } from '../../loadtest/window.ts';

test('a request inside the window counts whole, one outside not at all, one across it in part', () => {
  assert.equal(tokensWithin({ tokens: 100, firstAt: 2000, lastAt: 3000 }, 1000, 8000), 100);
  assert.equal(tokensWithin({ tokens: 100, firstAt: 0, lastAt: 900 }, 1000, 8000), 0);
  assert.equal(tokensWithin({ tokens: 100, firstAt: 7500, lastAt: 8500 }, 1000, 8000), 50);
  assert.equal(tokensWithin({ tokens: 7, firstAt: 5000, lastAt: 5000 }, 1000, 8000), 7);
  assert.equal(tokensWithin({ tokens: 7, firstAt: 8000, lastAt: 8000 }, 1000, 8000), 0);
});

test('splitting the window anywhere splits the tokens: nothing is counted twice or lost', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 500 }),
      fc.double({ min: 0, max: 10_000, noNaN: true }),
      fc.double({ min: 0, max: 5_000, noNaN: true }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (tokens, firstAt, length, cut) => {
        const s = { tokens, firstAt, lastAt: firstAt + length };
        const lo = -1;
        const hi = 20_000;
        const mid = lo + cut * (hi - lo);
        const whole = tokensWithin(s, lo, hi);
        assert.ok(Math.abs(whole - tokens) < 1e-9 * tokens + 1e-9);
        assert.ok(Math.abs(tokensWithin(s, lo, mid) + tokensWithin(s, mid, hi) - whole) < 1e-6 * tokens);
      },
    ),
  );
});
