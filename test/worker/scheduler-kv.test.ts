// The scheduler with a fake model under KV pressure: the rows of one step must not count the same
// free blocks. Two sequences that each fit one more block, but not both, once made the second
// commit fail its request with a 500 ("KV append beyond reservation"); now the step reserves room
// row by row, and the row that gets none is preempted with a 429.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FromWorker, SeqRequest } from '../../src/worker/protocol.ts';
import type { ForwardInput, ForwardOutput } from '../../src/worker/runner.ts';
import { Scheduler, type ForwardFn } from '../../src/worker/scheduler.ts';
import { PagedKvCache } from '../../src/kvcache/paged.ts';

const model = { vocabSize: 8, numLayers: 1, numKvHeads: 1, headDim: 2, hiddenSize: 2, contextLength: 64, eosTokenIds: [7] };
const W = model.numKvHeads * model.headDim;
const BS = 4; // tokens per block
const blockBytes = BS * model.numLayers * 2 * W * 4;

/** Always predicts token (position % 5) + 1, never EOS. */
const fake: ForwardFn = {
  layout: 'speculative',
  async forward(x: ForwardInput): Promise<ForwardOutput> {
    const rows = x.batch * x.newTokens;
    const logits = new Float32Array(rows * model.vocabSize);
    for (let i = 0; i < rows; i++) logits[i * model.vocabSize + ((Number(x.positionIds[i]) % 5) + 1)] = 1;
    const kv = () => [new Float32Array(rows * W)];
    return { logits, hidden: new Float32Array(rows * 2), hiddenShallow: new Float32Array(rows * 2), keys: kv(), values: kv() };
  },
};

function req(id: number, prompt: number): SeqRequest {
  return {
    id, promptIds: Array.from({ length: prompt }, (_, i) => i % 5), maxTokens: 40, minTokens: 0, ignoreEos: true, stop: [],
    sampling: { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0, seed: 1 },
    logprobs: null, promptLogprobs: false, drafter: 'none', maxDraftTokens: 0, acceptance: 'lossless', lanternK: 0, lanternDelta: 0, deadline: 0,
  };
}

test('decode rows of one step reserve their KV room one after another: the one without room gets a 429, not a 500', async () => {
  // 5 blocks: two 7-token prompts take 2 blocks each; after one step each needs a third block at
  // its 9th token, and only one is left
  const kv = new PagedKvCache({ layers: 1, kvHeads: 1, headDim: 2 }, 5 * blockBytes, BS);
  const out: FromWorker[] = [];
  const sched = new Scheduler({ model, target: fake, kv, drafters: new Map(), options: { maxBatchSize: 4, maxQueuedRequests: 4, prefillChunk: 64 }, send: (m) => out.push(m) });
  sched.submit(req(1, 7));
  sched.submit(req(2, 7));
  for (let i = 0; i < 50 && (await sched.step()); i++);
  const errors = out.filter((m): m is Extract<FromWorker, { type: 'error' }> => m.type === 'error');
  assert.ok(errors.length >= 1, 'the budget cannot hold both requests to the end');
  for (const e of errors) assert.equal(e.code, 'queue_full', `${e.code}: ${e.message}`);
  assert.equal(kv.stats().blocksReserved, 0, 'reservations are returned when the requests end');
});
