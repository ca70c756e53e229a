// The goodput draft policy against simulated steps: it must find the cap with the best measured
// tokens/ms for each batch size class, keep exploring, and follow the traffic when it changes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DRAFT_CAPS, DraftCapPolicy, EXPLORE_EVERY, type StepOutcome } from '../../src/worker/draft-policy.ts';

/** A simulated step at cap index `arm` over `batch` sequences: cap c costs 1 ms plus 0.1 ms per
 *  draft token and emits tokens so that its rate is rate(c); what the smaller caps would have
 *  emitted is reported as the scheduler does. */
function outcome(batch: number, arm: number, rate: (cap: number) => number): StepOutcome {
  const caps = DRAFT_CAPS.slice(0, arm + 1);
  const ms = (c: number) => 1 + 0.1 * c * batch;
  return { ms: ms(caps[arm]), tokens: caps.map((c) => rate(c) * ms(c)) };
}

/** Runs `steps` decode steps where cap c at batch b yields rate(c) tokens/ms. */
function run(policy: DraftCapPolicy, batch: number, steps: number, rate: (cap: number) => number, drafter?: string): Map<number, number> {
  const used = new Map<number, number>();
  for (let i = 0; i < steps; i++) {
    const { cap, arm } = policy.choose(batch, drafter);
    used.set(cap, (used.get(cap) ?? 0) + 1);
    policy.record(batch, arm, outcome(batch, arm, rate), drafter);
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
  policy.record(1, arm, { ms: 0, tokens: [5] });
  assert.deepEqual(policy.snapshot(), []);
});

test('drafters are measured apart: a cheap good drafter and a costly poor one get their own caps', () => {
  const policy = new DraftCapPolicy();
  for (let i = 0; i < 300; i++) {
    run(policy, 1, 1, (cap) => 1 + cap * 0.3, 'lookup');
    run(policy, 1, 1, (cap) => 2 - cap * 0.2, 'heads');
  }
  const caps = new Map(policy.snapshot().map((s) => [s.drafter, s.cap]));
  assert.equal(caps.get('lookup'), 8);
  assert.equal(caps.get('heads'), 0);
});

test('caps are compared on the same text: a good stretch under one cap does not crown it', () => {
  // Text alternates between stretches a drafter predicts well and stretches it cannot predict at
  // all, 40 steps each. Every cap emits more on good text, and on the same text a bigger cap
  // always emits more than a smaller one at little extra cost, so the right answer is the largest
  // cap. A policy comparing each cap's own steps would see whichever cap happened to be explored
  // in a good stretch as best.
  const policy = new DraftCapPolicy();
  let good = true;
  const used = new Map<number, number>();
  for (let i = 0; i < 4000; i++) {
    if (i % 40 === 0) good = !good;
    const { cap, arm } = policy.choose(1);
    if (i >= 2000) used.set(cap, (used.get(cap) ?? 0) + 1);
    const caps = DRAFT_CAPS.slice(0, arm + 1);
    const accepted = (c: number) => (good ? Math.min(c, 6) : 0); // good text: up to 6 drafts land
    const ms = (c: number) => (c === 0 ? 1 : 1.05 + 0.02 * c);
    policy.record(1, arm, { ms: ms(caps[arm]), tokens: caps.map((c) => 1 + accepted(c)) });
  }
  assert.equal(policy.snapshot()[0].cap, 8);
  assert.ok((used.get(8) ?? 0) > 2000 * 0.9, `cap 8 used ${used.get(8)} of the last 2000 steps`);
});
