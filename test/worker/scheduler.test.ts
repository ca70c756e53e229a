// The scheduler with a fake model (no model files): admission under the KV budget, eviction when
// the rows of one step do not all fit, deadlines, cancel mid-step, disconnect while queued, stop
// strings across steps, the goodput counterfactual bookkeeping, and mixed drafters in one batch.
//
// The fake target is a Markov chain: the logits at a node are one-hot on next(token, position), so
// a node's logits depend only on its own token and position, as a real model's would on its path.
// Plain greedy decoding of it is known in closed form, which the tests compare against.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chain, type DraftContext, type Drafter, type DraftTree } from '../../src/drafters/Drafter.ts';
import { PagedKvCache } from '../../src/kvcache/paged.ts';
import type { TextCodec } from '../../src/model/text.ts';
import type { FromWorker, SeqRequest } from '../../src/worker/protocol.ts';
import type { ForwardInput, ForwardOutput } from '../../src/worker/runner.ts';
import { Scheduler, type ForwardFn, type SchedulerOptions } from '../../src/worker/scheduler.ts';
import { stopStrings } from '../../src/worker/stop.ts';

const V = 16;
const EOS = 15;
const model = { vocabSize: V, numLayers: 1, numKvHeads: 1, headDim: 2, hiddenSize: 2, contextLength: 256, eosTokenIds: [EOS] };
const W = model.numKvHeads * model.headDim;
const BLOCK = 4; // tokens per KV block
const blockBytes = BLOCK * model.numLayers * 2 * W * 4;

/** The fake target's greedy choice after `token` at `position` (never EOS). */
const next = (token: number, position: number) => (token * 5 + position * 3 + 1) % 15;

function fakeTarget(hooks: { onForward?: () => void | Promise<void> } = {}): ForwardFn & { forwards: number } {
  const target = {
    layout: 'speculative' as const,
    forwards: 0,
    async forward(x: ForwardInput): Promise<ForwardOutput> {
      target.forwards++;
      await hooks.onForward?.();
      const rows = x.batch * x.newTokens;
      const logits = new Float32Array(rows * V); // [batch, newTokens, vocab]
      for (let i = 0; i < rows; i++) logits[i * V + next(Number(x.inputIds[i]), Number(x.positionIds[i]))] = 10;
      const kv = () => [new Float32Array(rows * W)];
      return { logits, hidden: new Float32Array(rows * 2), hiddenShallow: new Float32Array(rows * 2), keys: kv(), values: kv() };
    },
  };
  return target;
}

/** What plain greedy decoding of the fake target emits after `prompt`. */
function plainGreedy(prompt: number[], n: number): number[] {
  const out: number[] = [];
  let tok = prompt[prompt.length - 1];
  for (let pos = prompt.length - 1; out.length < n; pos++) out.push((tok = next(tok, pos)));
  return out;
}

/** Drafts a chain of the target's own greedy tokens, wrong from `wrongAt` on (Infinity: never). */
class OracleDrafter implements Drafter {
  readonly needs = { hidden: false as const, treeMask: false };
  readonly asked: number[][] = [];
  readonly released: number[] = [];
  constructor(readonly name: string, private readonly wrongAt = Infinity, private readonly length = 4) {}
  propose(batch: readonly DraftContext[]): (DraftTree | null)[] {
    this.asked.push(batch.map((c) => c.seqId));
    return batch.map((c) => {
      const draft: number[] = [];
      let tok = c.tokens[c.tokens.length - 1];
      for (let pos = c.tokens.length - 1; draft.length < Math.min(this.length, c.maxNodes); pos++) {
        tok = next(tok, pos);
        draft.push(draft.length >= this.wrongAt ? (tok + 1) % 15 : tok);
      }
      return chain(draft);
    });
  }
  release(seqId: number): void {
    this.released.push(seqId);
  }
}

let ids = 0;
function req(over: Partial<SeqRequest> = {}): SeqRequest {
  return {
    id: ++ids, promptIds: [1, 2, 3, 4, 5], maxTokens: 12, minTokens: 0, ignoreEos: false, stop: [],
    sampling: { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0, seed: 1 },
    logprobs: null, promptLogprobs: false, drafter: 'none', maxDraftTokens: 8,
    acceptance: 'lossless', lanternK: 0, lanternDelta: 0, deadline: 0, ...over,
  };
}

interface Setup {
  kvBlocks?: number;
  drafters?: Drafter[];
  options?: Partial<SchedulerOptions>;
  target?: ForwardFn;
  stops?: boolean;
}

function setup(o: Setup = {}) {
  const kv = new PagedKvCache({ layers: 1, kvHeads: 1, headDim: 2 }, (o.kvBlocks ?? 256) * blockBytes, BLOCK);
  const sent: FromWorker[] = [];
  // the fake codec spells token i as the letter 'a' + i
  const codec = { decode: (xs: readonly number[]) => xs.map((i) => String.fromCharCode(97 + i)).join('') } as unknown as TextCodec;
  const sched = new Scheduler({
    model, target: o.target ?? fakeTarget(), kv,
    drafters: new Map((o.drafters ?? []).map((d) => [d.name, d])),
    options: { maxBatchSize: 8, maxQueuedRequests: 8, prefillChunk: 64, draftPolicy: 'static', ...o.options },
    send: (m) => sent.push(m),
    stops: o.stops ? stopStrings(codec) : undefined,
  });
  const tokensOf = (id: number) => sent.flatMap((m) => (m.type === 'tokens' && m.id === id ? m.ids : []));
  const doneOf = (id: number) => sent.find((m): m is Extract<FromWorker, { type: 'done' }> => m.type === 'done' && m.id === id);
  const errorOf = (id: number) => sent.find((m): m is Extract<FromWorker, { type: 'error' }> => m.type === 'error' && m.id === id);
  const run = async (maxSteps = 200) => {
    let steps = 0;
    while (steps < maxSteps && (await sched.step())) steps++;
    return steps;
  };
  return { sched, kv, sent, tokensOf, doneOf, errorOf, run };
}

test('plain greedy decoding emits the target chain and finishes at max_tokens', async () => {
  const { sched, tokensOf, doneOf, run, kv } = setup();
  const r = req({ maxTokens: 10 });
  sched.submit(r);
  await run();
  assert.deepEqual(tokensOf(r.id), plainGreedy(r.promptIds, 10));
  assert.equal(doneOf(r.id)?.finishReason, 'length');
  assert.equal(kv.stats().blocksReserved, 0);
});

test('a drafter changes the number of forwards, never the tokens; statistics count kept drafts', async () => {
  const plain = setup();
  const r0 = req({ maxTokens: 20 });
  plain.sched.submit(r0);
  await plain.run();
  const drafter = new OracleDrafter('oracle', 2); // first two draft tokens right, the rest wrong
  const target = fakeTarget();
  const spec = setup({ drafters: [drafter], target });
  const r1 = req({ maxTokens: 20, drafter: 'oracle' });
  spec.sched.submit(r1);
  await spec.run();
  assert.deepEqual(spec.tokensOf(r1.id), plain.tokensOf(r0.id));
  const done = spec.doneOf(r1.id)!;
  assert.ok(done.spec && done.spec.draftSteps > 0);
  // every draft step keeps exactly two tokens, except where max_tokens cut it
  assert.ok(done.spec.acceptedTokens <= 2 * done.spec.draftSteps && done.spec.acceptedTokens >= 2 * (done.spec.draftSteps - 1));
  assert.ok(target.forwards < 20, `${target.forwards} forwards for 20 tokens`);
  assert.deepEqual(drafter.released, [r1.id], 'the drafter is released once, when the sequence ends');
});

test('admission waits for KV room, and a request that can never fit is refused with a 429', async () => {
  // 8 blocks = 32 token rows: one request of 5 + 12 tokens and lookahead fits, two do not
  const { sched, tokensOf, doneOf, errorOf, sent, run } = setup({ kvBlocks: 8, options: { draftPolicy: 'static' } });
  const a = req({ maxTokens: 12, maxDraftTokens: 0 });
  const b = req({ maxTokens: 12, maxDraftTokens: 0 });
  const huge = req({ promptIds: Array.from({ length: 40 }, (_, i) => i % 15), maxTokens: 4 });
  sched.submit(a);
  sched.submit(b);
  await sched.step(); // admits a (prompt 5 + 1 row), then b
  assert.deepEqual(sched.load, { running: 2, waiting: 0 }, 'both prompts fit at admission');
  await run();
  for (const r of [a, b]) {
    if (errorOf(r.id)) assert.equal(errorOf(r.id)!.code, 'queue_full');
    else assert.deepEqual(tokensOf(r.id), plainGreedy(r.promptIds, 12));
  }
  assert.ok(doneOf(a.id) || doneOf(b.id), 'at least one finishes');
  sched.submit(huge);
  await run();
  assert.equal(errorOf(huge.id)?.code, 'queue_full');
  assert.match(errorOf(huge.id)!.message, /does not fit/);
  assert.ok(!sent.some((m) => m.type === 'error' && m.code === 'internal_error'));
});

test('a request waits in the queue while the running ones hold the KV budget, then runs', async () => {
  const { sched, tokensOf, doneOf, run } = setup({ kvBlocks: 5 });
  const a = req({ maxTokens: 8, maxDraftTokens: 0 });
  const b = req({ maxTokens: 8, maxDraftTokens: 0, promptIds: [6, 7, 8, 9, 10, 11, 12, 13, 14, 1, 2, 3] });
  sched.submit(a);
  sched.submit(b);
  await sched.step();
  assert.deepEqual(sched.load, { running: 1, waiting: 1 }, 'b waits: its prompt does not fit beside a');
  await run();
  assert.deepEqual(tokensOf(a.id), plainGreedy(a.promptIds, 8));
  assert.deepEqual(tokensOf(b.id), plainGreedy(b.promptIds, 8));
  assert.ok(doneOf(a.id) && doneOf(b.id));
});

test('decode rows of one step reserve their KV room one after another: the one without room gets a 429, not a 500', async () => {
  // Two sequences that each fit one more block, but not both, once made the second commit fail its
  // request with a 500 ("KV append beyond reservation"). 5 blocks: two 7-token prompts take 2
  // blocks each; after one step each needs a third block at its 9th token, and only one is left.
  const { sched, kv, sent, run } = setup({ kvBlocks: 5, options: { maxBatchSize: 4, maxQueuedRequests: 4 } });
  const prompt = Array.from({ length: 7 }, (_, i) => i % 5);
  sched.submit(req({ promptIds: prompt, maxTokens: 40, ignoreEos: true, maxDraftTokens: 0 }));
  sched.submit(req({ promptIds: prompt, maxTokens: 40, ignoreEos: true, maxDraftTokens: 0 }));
  await run(50);
  const errors = sent.filter((m): m is Extract<FromWorker, { type: 'error' }> => m.type === 'error');
  assert.ok(errors.length >= 1, 'the budget cannot hold both requests to the end');
  for (const e of errors) assert.equal(e.code, 'queue_full', `${e.code}: ${e.message}`);
  assert.equal(kv.stats().blocksReserved, 0, 'reservations are returned when the requests end');
});

test('the queue is bounded', () => {
  const { sched, errorOf } = setup({ options: { maxQueuedRequests: 2 } });
  const rs = [req(), req(), req()];
  for (const r of rs) sched.submit(r);
  assert.equal(errorOf(rs[2].id)?.code, 'queue_full');
  assert.equal(errorOf(rs[0].id), undefined);
});

test('a request past its deadline fails with request_timeout and frees its KV', async () => {
  const { sched, kv, errorOf, sent, run } = setup();
  const r = req({ maxTokens: 100, ignoreEos: true, deadline: Date.now() + 30 });
  sched.submit(r);
  await sched.step();
  await new Promise((res) => setTimeout(res, 40));
  await run();
  assert.equal(errorOf(r.id)?.code, 'request_timeout');
  assert.equal(kv.stats().blocksReserved, 0);
  assert.ok(sent.some((m) => m.type === 'released' && m.id === r.id), 'its KV use is reported');
});

test('cancel during a step (client disconnect): no tokens after the step, KV released, no done', async () => {
  let sched!: Scheduler;
  let cancelled = -1;
  const target = fakeTarget({ onForward: () => void (cancelled >= 0 && sched.cancel(cancelled)) });
  const s = setup({ target });
  sched = s.sched;
  const r = req({ maxTokens: 50 });
  sched.submit(r);
  await sched.step(); // prefill + first token
  cancelled = r.id; // the next forward cancels it while running
  await sched.step();
  const before = s.tokensOf(r.id).length;
  await s.run();
  assert.equal(s.tokensOf(r.id).length, before, 'nothing after the step it was cancelled in');
  assert.equal(s.doneOf(r.id), undefined);
  assert.ok(s.sent.some((m) => m.type === 'released' && m.id === r.id));
  assert.equal(s.kv.stats().blocksReserved, 0);
  assert.ok(sched.idle());
});

test('cancel while queued: the request leaves without a word', async () => {
  const { sched, sent, run } = setup({ options: { maxBatchSize: 1 } });
  const a = req({ maxTokens: 4 });
  const b = req({ maxTokens: 4 });
  sched.submit(a);
  sched.submit(b);
  sched.cancel(b.id);
  await run();
  assert.ok(!sent.some((m) => 'id' in m && m.id === b.id));
  assert.ok(sched.idle());
});

test('a stop string completed across two steps ends the sequence in the step that completes it', async () => {
  const prompt = [1, 2, 3, 4, 5];
  const expected = plainGreedy(prompt, 30);
  const letters = (xs: number[]) => xs.map((i) => String.fromCharCode(97 + i)).join('');
  // a stop string made of the 4th and 5th generated tokens: with 1-token decode steps these come
  // from two different steps
  const stop = letters(expected.slice(3, 5));
  const target = fakeTarget();
  const { sched, tokensOf, doneOf, run } = setup({ stops: true, target });
  const r = req({ promptIds: prompt, maxTokens: 30, stop: [stop] });
  sched.submit(r);
  await run();
  const first = letters(expected).indexOf(stop);
  assert.deepEqual(tokensOf(r.id), expected.slice(0, first + 2), 'emission ends with the token completing the stop string');
  assert.equal(doneOf(r.id)?.finishReason, 'stop');
  assert.equal(doneOf(r.id)?.completionTokens, first + 2);
  assert.equal(target.forwards, 1 + first + 1, 'no forward after the stop');
});

test('a stop string inside an accepted draft cuts the step there; drafts past it are not counted', async () => {
  const prompt = [1, 2, 3, 4, 5];
  const expected = plainGreedy(prompt, 30);
  const letters = (xs: number[]) => xs.map((i) => String.fromCharCode(97 + i)).join('');
  const stop = letters(expected.slice(2, 3));
  const drafter = new OracleDrafter('oracle', Infinity, 6);
  const { sched, tokensOf, doneOf, run } = setup({ stops: true, drafters: [drafter] });
  const r = req({ promptIds: prompt, maxTokens: 30, stop: [stop], drafter: 'oracle' });
  sched.submit(r);
  await run();
  const cut = letters(expected).indexOf(stop) + 1;
  assert.deepEqual(tokensOf(r.id), expected.slice(0, cut));
  const done = doneOf(r.id)!;
  assert.equal(done.finishReason, 'stop');
  assert.equal(done.spec!.acceptedTokens, cut - 1, 'only drafts up to the stop count as accepted');
});

test('goodput bookkeeping: each step reports what every smaller cap would have emitted', async () => {
  // the drafter's first 3 tokens are right: under cap c a step would keep min(c, 3) drafts + bonus
  const drafter = new OracleDrafter('oracle', 3, 8);
  const { sched, run } = setup({ drafters: [drafter], options: { draftPolicy: 'goodput' } });
  const recorded: { batch: number; arm: number; tokens: number[]; drafter: string }[] = [];
  const record = sched.draftCaps.record.bind(sched.draftCaps);
  sched.draftCaps.record = (batch, arm, outcome, name) => {
    recorded.push({ batch, arm, tokens: outcome.tokens.slice(), drafter: name! });
    record(batch, arm, outcome, name);
  };
  const r = req({ maxTokens: 120, ignoreEos: true, drafter: 'oracle' });
  sched.submit(r);
  await run();
  const caps = sched.draftCaps.caps;
  assert.ok(recorded.length > 10);
  // the last steps draft less: max_tokens is near
  const full = recorded.slice(0, -3);
  for (const x of full) {
    assert.equal(x.tokens.length, x.arm + 1);
    assert.equal(x.drafter, 'oracle');
    assert.equal(x.batch, 1);
    x.tokens.forEach((t, i) => assert.equal(t, 1 + Math.min(caps[i], 3), `cap ${caps[i]} of arm ${x.arm}`));
  }
  assert.ok(new Set(recorded.map((x) => x.arm)).size >= 3, 'untried caps are tried');
});

test('mixed drafters in one batch: each drafter sees only its sequences, outputs equal plain', async () => {
  const a = new OracleDrafter('a', 1);
  const b = new OracleDrafter('b', Infinity);
  const { sched, tokensOf, doneOf, run } = setup({ drafters: [a, b], options: { draftPolicy: 'goodput' } });
  const recorded: string[] = [];
  const record = sched.draftCaps.record.bind(sched.draftCaps);
  sched.draftCaps.record = (batch, arm, outcome, name) => {
    recorded.push(name!);
    record(batch, arm, outcome, name);
  };
  const ra = req({ drafter: 'a', maxTokens: 16, promptIds: [3, 1, 4, 1, 5] });
  const rb = req({ drafter: 'b', maxTokens: 16, promptIds: [2, 7, 1, 8, 2] });
  const rn = req({ drafter: 'none', maxTokens: 16, promptIds: [1, 6, 1, 8, 0] });
  for (const r of [ra, rb, rn]) sched.submit(r);
  await run();
  for (const r of [ra, rb, rn]) assert.deepEqual(tokensOf(r.id), plainGreedy(r.promptIds, 16));
  assert.ok(a.asked.flat().every((id) => id === ra.id) && a.asked.length > 0);
  assert.ok(b.asked.flat().every((id) => id === rb.id) && b.asked.length > 0);
  assert.ok(recorded.includes('mixed'), 'a batch of two drafters is measured as mixed');
  assert.ok(doneOf(rb.id)!.spec!.acceptedTokens > doneOf(ra.id)!.spec!.acceptedTokens);
  assert.equal(doneOf(rn.id)!.spec, undefined);
});

test('a drafter that throws costs speed, not correctness: plain decoding with a fallback note', async () => {
  const broken: Drafter = { name: 'broken', needs: { hidden: false, treeMask: false }, propose: () => { throw new Error('boom'); }, release() {} };
  const { sched, tokensOf, doneOf, run } = setup({ drafters: [broken] });
  const r = req({ drafter: 'broken', maxTokens: 10 });
  sched.submit(r);
  await run();
  assert.deepEqual(tokensOf(r.id), plainGreedy(r.promptIds, 10));
  assert.match(doneOf(r.id)!.spec!.fallback!, /broken failed: boom/);
});

test('a failed forward fails the sequences in it with internal_error; the scheduler goes on', async () => {
  let fail = false;
  const target = fakeTarget({ onForward: () => { if (fail) { fail = false; throw new Error('onnx says no'); } } });
  const { sched, errorOf, tokensOf, run } = setup({ target });
  const a = req({ maxTokens: 6 });
  sched.submit(a);
  await sched.step();
  fail = true;
  await run();
  assert.equal(errorOf(a.id)?.code, 'internal_error');
  const b = req({ maxTokens: 6 });
  sched.submit(b);
  await run();
  assert.deepEqual(tokensOf(b.id), plainGreedy(b.promptIds, 6));
});
