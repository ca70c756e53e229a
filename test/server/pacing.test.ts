import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TextEvent, TextPart } from '../../src/engine/types.ts';
import { paceSmoothly, splitByToken } from '../../src/server/pacing.ts';
import type { TextChunk } from '../../src/server/format.ts';


function stepEvent(step: number, texts: string[]): TextChunk {
  const parts: TextPart[] = texts.map((text, position) => ({
    text,
    tokenId: 100 + position,
    sources: text ? [{ text, source: position < texts.length - 1 ? 'draft' : 'target', step, position, drafted: texts.length - 1, cap: 8, tokenId: 100 + position }] : [],
  }));
  return { type: 'text', text: texts.join(''), tokenIds: parts.map((p) => p.tokenId!), parts };
}

const done: TextEvent = { type: 'done', finishReason: 'length', promptTokens: 3, completionTokens: 12 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A choice whose steps arrive every `intervalMs`, each with the given token texts. */
function steps(intervalMs: number, events: TextEvent[]) {
  let i = 0;
  return async () => {
    if (i > 0) await sleep(intervalMs);
    return events[i++];
  };
}

test('splitByToken: one event per token with text; a token without text rides with the next', () => {
  const pieces = splitByToken(stepEvent(1, ['a', '', 'b', 'c', '']));
  assert.deepEqual(pieces.map((p) => p.text), ['a', 'b', 'c']);
  assert.deepEqual(pieces.map((p) => p.tokenIds.length), [1, 2, 2]);
  assert.equal(splitByToken(stepEvent(1, ['only'])).length, 1);
});

test('smooth pacing spreads a step over the step interval, keeps every character, ends on time', async () => {
  const interval = 60;
  const events: TextEvent[] = [stepEvent(0, ['x']), ...Array.from({ length: 4 }, (_, s) => stepEvent(s + 1, ['a', 'b', 'c', 'd'])), done];
  const t0 = performance.now();
  const seen: { at: number; event: TextEvent }[] = [];
  for await (const event of paceSmoothly(steps(interval, events))) seen.push({ at: performance.now() - t0, event });
  const texts = seen.flatMap(({ event }) => (event.type === 'text' ? [event.text] : []));
  assert.equal(texts.join(''), 'x' + 'abcd'.repeat(4));
  assert.equal(seen.at(-1)!.event.type, 'done');
  // from the second step on the interval is known: tokens leave one by one
  assert.ok(texts.length >= 2 + 3 * 4 - 2, `tokens were not split: ${JSON.stringify(texts)}`);
  // the end is not held back: done follows the last step's arrival within about one interval
  const lastArrival = interval * (events.length - 1);
  assert.ok(seen.at(-1)!.at < lastArrival + interval * 1.5, `done at ${seen.at(-1)!.at} ms, last step arrived at ~${lastArrival} ms`);
  // gaps inside a paced step are a fraction of the interval, not all zero
  const gaps = seen.slice(1).map((s, i) => s.at - seen[i].at);
  const small = gaps.filter((g) => g > 5).length;
  assert.ok(small >= 6, `expected spread-out tokens, gaps ${gaps.map((g) => g.toFixed(0)).join(' ')}`);
});

test('smooth pacing never falls a step behind: held tokens are re-spread when a step comes early, flushed at the end', async () => {
  // the interval estimate says 200 ms, then a step comes after 10 ms: its predecessor must not be
  // spread over 200 ms
  const t0 = performance.now();
  const times = [0, 200, 210, 220];
  const events = [stepEvent(0, ['x']), stepEvent(1, ['a', 'b']), stepEvent(2, ['c', 'd', 'e', 'f']), done];
  let i = 0;
  const next = async () => {
    const wait = t0 + times[i] - performance.now();
    if (wait > 0) await sleep(wait);
    return events[i++];
  };
  let text = '';
  let end = 0;
  for await (const event of paceSmoothly(next)) {
    if (event.type === 'text') text += event.text;
    else end = performance.now() - t0;
  }
  assert.equal(text, 'xabcdef');
  assert.ok(end < 300, `done at ${end.toFixed(0)} ms, the last step arrived at 220 ms`);
});

test('an error from the engine reaches the consumer; a stopped consumer leaves no unhandled rejection', async () => {
  let calls = 0;
  const failing = async () => {
    calls++;
    if (calls === 1) return stepEvent(0, ['a']);
    throw new Error('engine failed');
  };
  await assert.rejects(async () => {
    for await (const _ of paceSmoothly(failing));
  }, /engine failed/);

  calls = 0;
  const generator = paceSmoothly(failing);
  await generator.next(); // the generator pulled the next event ahead, which fails
  await generator.return(undefined);
  await sleep(20); // an unhandled rejection would fail the test run here
});

test('steps of uneven size come out at an even cadence', async () => {
  // a drafter that lands 5 tokens, then none, then 5…: unpaced, gaps of 0 and of a whole step
  const sizes = [1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5];
  const events: TextEvent[] = [...sizes.map((n, s) => stepEvent(s, Array.from({ length: n }, (_, k) => String.fromCharCode(97 + k)))), done];
  const cv = (xs: number[]) => {
    const mean = xs.reduce((a, x) => a + x, 0) / xs.length;
    return Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / xs.length) / mean;
  };
  const times: number[] = [];
  let text = '';
  for await (const event of paceSmoothly(steps(50, events))) {
    if (event.type !== 'text') continue;
    text += event.text;
    for (const _ of splitByToken(event)) times.push(performance.now());
  }
  assert.equal(text, sizes.map((n) => 'abcde'.slice(0, n)).join(''));
  // after the estimates settle (4 steps), compare with the unpaced gaps: 0 inside a step, 50 ms between
  const settled = times.slice(sizes.slice(0, 4).reduce((a, n) => a + n, 0));
  const gaps = settled.slice(1).map((t, i) => t - settled[i]);
  const unpaced = sizes.slice(4).flatMap((n) => [50, ...Array(n - 1).fill(0)]).slice(1);
  assert.ok(cv(gaps) < 0.5 * cv(unpaced), `paced gap variation ${cv(gaps).toFixed(2)}, unpaced ${cv(unpaced).toFixed(2)}`);
});
