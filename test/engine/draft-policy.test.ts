// The goodput draft policy against simulated steps: it must find the cap with the best measured
// tokens/ms for each batch size class, keep exploring, and follow the traffic when it changes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DRAFT_CAPS, DraftCapPolicy, EXPLORE_EVERY } from '../../src/engine/draft-policy.ts';

/** Runs `steps` decode steps where cap c at batch b yields rate(c, b) tokens/ms (1 ms steps). */
function run(policy: DraftCapPolicy, batch: number, steps: number, rate: (cap: number) => number): Map<number, number> {
  const used = new Map<number, number>();
  for (let i = 0; i < steps; i++) {
    const { cap, arm } = policy.choose(batch);
    used.set(cap, (used.get(cap) ?? 0) + 1);
    policy.record(batch, arm, rate(cap), 1);
  }
  return used;
}

test('settles on the best cap and explores the others now and then', () => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0.1, max: 5, noNaN: true }), { minLength: DRAFT_CAPS.length, maxLength: DRAFT_CAPS.length }), (rates) => {
      const policy = new DraftCapPolicy();
      const rateOf = (cap: number) => rates[DRAFT_CAPS.indexOf(cap as (typeof DRAFT_CAPS)[number])];
      const top = Math.max(...rates);
      const best = DRAFT_CAPS.filter((_, i) => rates[i] >= top * (1 - 1e-9)); // (near-)ties: any of them is right
      const used = run(policy, 1, 800, rateOf);
      // every cap tried at least once, the best most of the time, exploration bounded
      for (const c of DRAFT_CAPS) assert.ok((used.get(c) ?? 0) >= 1);
      const bestUsed = best.reduce<number>((a, c) => a + (used.get(c) ?? 0), 0);
      assert.ok(bestUsed >= 800 * (1 - 1 / EXPLORE_EVERY) - DRAFT_CAPS.length, `best caps ${best} used ${bestUsed}`);
      assert.ok(best.includes(policy.snapshot()[0].cap as (typeof DRAFT_CAPS)[number]));
    }),
    { numRuns: 50 },
  );
});

test('batch size classes are measured apart: speculation can be on for one and off for another', () => {
  const policy = new DraftCapPolicy();
  // small batches: verification nearly free, drafting pays; large: compute-bound, it does not
  run(policy, 1, 300, (cap) => 1 + cap * 0.2);
  run(policy, 32, 300, (cap) => 10 - cap);
  const snap = new Map(policy.snapshot().map((s) => [s.batchClass, s.cap]));
  assert.equal(snap.get('1'), 8);
  assert.equal(snap.get('32+'), 0);
});

test('follows the traffic when the best cap changes', () => {
  const policy = new DraftCapPolicy();
  run(policy, 4, 400, (cap) => (cap === 8 ? 3 : 1)); // repetitive traffic: long drafts win
  assert.equal(policy.snapshot()[0].cap, 8);
  run(policy, 4, 2000, (cap) => (cap === 0 ? 2 : 0.5)); // drafts stop landing: plain wins
  assert.equal(policy.snapshot()[0].cap, 0);
});

test('a measurement with no elapsed time is ignored', () => {
  const policy = new DraftCapPolicy();
  const { arm } = policy.choose(1);
  policy.record(1, arm, 5, 0);
  assert.deepEqual(policy.snapshot(), []);
});

test('drafters are measured apart: a cheap good drafter and a costly poor one get their own caps', () => {
  const policy = new DraftCapPolicy();
  for (let i = 0; i < 300; i++) {
    for (const [drafter, rate] of [['lookup', (cap: number) => 1 + cap * 0.3], ['heads', (cap: number) => 2 - cap * 0.2]] as const) {
      const { cap, arm } = policy.choose(1, drafter);
      policy.record(1, arm, rate(cap), 1, drafter);
    }
  }
  const caps = new Map(policy.snapshot().map((s) => [s.drafter, s.cap]));
  assert.equal(caps.get('lookup'), 8);
  assert.equal(caps.get('heads'), 0);
});
