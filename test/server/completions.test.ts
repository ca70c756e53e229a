import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FAKE_LOGPROB, FAKE_MODEL_ID, FAKE_OUTPUT } from './fake-engine.ts';
import { completion, makeApp, post, sseEvents, type ErrorBody } from './helpers.ts';

describe('POST /v1/completions', () => {
  test('non-streaming: OpenAI shape, default max_tokens 16, usage', async () => {
    const { app, engine } = await makeApp({ fake: { eosAfter: 100 } });
    const res = await post(app, '/v1/completions', completion({ temperature: 0 }));
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.match(body.id, /^cmpl-[0-9a-f]{32}$/);
    assert.equal(body.object, 'text_completion');
    assert.equal(body.model, FAKE_MODEL_ID);
    assert.ok(Math.abs(body.created - Date.now() / 1000) < 5);
    assert.deepEqual(body.choices, [{ index: 0, text: FAKE_OUTPUT.slice(0, 16), logprobs: null, finish_reason: 'length' }]);
    assert.deepEqual(body.usage, { prompt_tokens: 5, completion_tokens: 16, total_tokens: 21 });
    assert.equal(body.speculative, undefined);
    assert.equal(engine.requests[0].maxTokens, 16);
    assert.equal(res.headers['x-request-id'] !== undefined, true);
  });

  test('maps every sampling field onto the TextRequest', async () => {
    const { app, engine } = await makeApp();
    const res = await post(
      app,
      '/v1/completions',
      completion({
        max_tokens: 7,
        temperature: 0.5,
        top_p: 0.9,
        top_k: -1,
        seed: 42,
        stop: 'x',
        presence_penalty: 0.5,
        frequency_penalty: -0.5,
        ignore_eos: true,
        min_tokens: 3,
        user: 'someone',
        logit_bias: {},
      }),
    );
    assert.equal(res.statusCode, 200);
    const { signal, ...request } = engine.requests[0];
    assert.ok(signal instanceof AbortSignal);
    assert.deepEqual(request, {
      prompt: 'hello',
      maxTokens: 7,
      minTokens: 3,
      ignoreEos: true,
      stop: ['x'],
      sampling: { temperature: 0.5, topP: 0.9, topK: 0, seed: 42, presencePenalty: 0.5, frequencyPenalty: -0.5 },
      logprobs: null,
      echo: false,
      speculative: null,
    });
  });

  test('null optional fields mean "not set"', async () => {
    const { app, engine } = await makeApp();
    const res = await post(app, '/v1/completions', completion({ max_tokens: null, temperature: null, stop: null, seed: null, n: null }));
    assert.equal(res.statusCode, 200);
    assert.equal(engine.requests[0].maxTokens, 16);
    assert.equal(engine.requests[0].sampling.temperature, 1);
    assert.deepEqual(engine.requests[0].stop, []);
    assert.equal(engine.requests[0].sampling.seed, undefined);
  });

  test('several prompts × n: index = promptIdx*n + i, seeds seed+i, prompt tokens once per prompt', async () => {
    const { app, engine } = await makeApp();
    const res = await post(app, '/v1/completions', completion({ prompt: ['ab', 'cdef'], n: 3, seed: 10, max_tokens: 4 }));
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.deepEqual(
      body.choices.map((c: { index: number }) => c.index),
      [0, 1, 2, 3, 4, 5],
    );
    assert.deepEqual(
      engine.requests.map((r) => [r.prompt, r.sampling.seed]),
      [['ab', 10], ['ab', 11], ['ab', 12], ['cdef', 10], ['cdef', 11], ['cdef', 12]],
    );
    // seeded choices differ from each other, and the fake rotates its text by the seed
    assert.equal(body.choices[1].text, FAKE_OUTPUT.slice(11, 15));
    assert.notEqual(body.choices[0].text, body.choices[1].text);
    assert.deepEqual(body.usage, { prompt_tokens: 2 + 4, completion_tokens: 24, total_tokens: 30 });
  });

  test('choices run concurrently', async () => {
    const { app, engine } = await makeApp({ fake: { tokenDelayMs: 5 } });
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, engine.running)), 1);
    const res = await post(app, '/v1/completions', completion({ n: 4, max_tokens: 5 }));
    clearInterval(timer);
    assert.equal(res.statusCode, 200);
    assert.equal(peak, 4);
  });

  test('token-id prompts: one array is one prompt, an array of arrays is several', async () => {
    const { app, engine } = await makeApp();
    assert.equal((await post(app, '/v1/completions', completion({ prompt: [104, 105] }))).statusCode, 200);
    assert.deepEqual(engine.requests[0].prompt, [104, 105]);
    const res = await post(app, '/v1/completions', completion({ prompt: [[1, 2], [3]] }));
    assert.equal(res.json().choices.length, 2);
    assert.deepEqual(engine.requests.slice(1).map((r) => r.prompt), [[1, 2], [3]]);
  });

  test('token id outside the vocabulary is a 400 naming its position', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/v1/completions', completion({ prompt: [[1], [2, 999]] }));
    assert.equal(res.statusCode, 400);
    assert.equal(res.json<ErrorBody>().error.param, 'prompt.1.1');
  });

  test('echo + logprobs: prompt first, completions logprobs format', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/v1/completions', completion({ prompt: 'hi', echo: true, logprobs: 2, max_tokens: 2, temperature: 0 }));
    assert.equal(res.statusCode, 200);
    const choice = res.json().choices[0];
    assert.equal(choice.text, 'hith');
    assert.deepEqual(choice.logprobs, {
      tokens: ['h', 'i', 't', 'h'],
      token_logprobs: [null, FAKE_LOGPROB, FAKE_LOGPROB, FAKE_LOGPROB],
      top_logprobs: [null, { i: -0.25, alt1: -1.25 }, { t: -0.25, alt1: -1.25 }, { h: -0.25, alt1: -1.25 }],
      text_offset: [0, 1, 2, 3],
    });
  });

  test('max_tokens 0 with echo returns just the prompt', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/v1/completions', completion({ echo: true, max_tokens: 0 }));
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().choices[0].text, 'hello');
    assert.equal(res.json().usage.completion_tokens, 0);
  });

  test('speculative params reach the engine and stats come back per choice', async () => {
    const speculation = { drafter: 'hydra', draftSteps: 4, draftTokens: 16, acceptedTokens: 10, meanAcceptanceLength: 3.5 };
    const { app, engine } = await makeApp({ fake: { speculation } });
    const res = await post(
      app,
      '/v1/completions',
      completion({ n: 2, speculative: { drafter: 'hydra', max_draft_tokens: 5, acceptance: 'lantern', lantern_k: 4, lantern_delta: 0.1 } }),
    );
    assert.equal(res.statusCode, 200);
    assert.deepEqual(engine.requests[0].speculative, { drafter: 'hydra', maxDraftTokens: 5, acceptance: 'lantern', lanternK: 4, lanternDelta: 0.1 });
    const stats = { drafter: 'hydra', draft_steps: 4, draft_tokens: 16, accepted_tokens: 10, mean_acceptance_length: 3.5, acceptance: 'lossless' };
    assert.deepEqual(res.json().speculative, [{ index: 0, ...stats }, { index: 1, ...stats }]);
  });

  test('a lossy acceptance says so in the response', async () => {
    const speculation = {
      drafter: 'hydra',
      draftSteps: 1,
      draftTokens: 2,
      acceptedTokens: 2,
      meanAcceptanceLength: 3,
      lossy: { policy: 'lantern' as const, k: 4, delta: 0.1, relaxedSteps: 1 },
    };
    const { app } = await makeApp({ fake: { speculation } });
    const res = await post(app, '/v1/completions', completion({ speculative: { drafter: 'hydra', acceptance: 'lantern' } }));
    assert.equal(res.json().speculative[0].acceptance, 'lantern');
    assert.deepEqual(res.json().speculative[0].lossy, { policy: 'lantern', k: 4, delta: 0.1, relaxed_steps: 1 });
  });

  test('speculative without drafter uses the default; unknown drafter is 400 unknown_drafter', async () => {
    const { app, engine } = await makeApp({ fake: { info: { defaultDrafter: 'hydra' } } });
    assert.equal((await post(app, '/v1/completions', completion({ speculative: { max_draft_tokens: 3 } }))).statusCode, 200);
    assert.equal(engine.requests[0].speculative?.drafter, 'hydra');
    const res = await post(app, '/v1/completions', completion({ speculative: { drafter: 'nope' } }));
    assert.equal(res.statusCode, 400);
    assert.equal(res.json<ErrorBody>().error.code, 'unknown_drafter');
    assert.equal(res.json<ErrorBody>().error.param, 'speculative.drafter');
    assert.equal((await post(app, '/v1/completions', completion({ speculative: { drafter: 'none' } }))).statusCode, 200);
  });

  test('streaming: text chunks, final chunk with finish_reason, [DONE]', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/v1/completions', completion({ stream: true, max_tokens: 3, temperature: 0 }));
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.equal(res.headers['x-accel-buffering'], 'no');
    const events = sseEvents(res.body) as any[];
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1);
    assert.deepEqual(
      chunks.map((c) => c.choices[0].text),
      ['t', 'h', 'e', ''],
    );
    assert.deepEqual(
      chunks.map((c) => c.choices[0].finish_reason),
      [null, null, null, 'length'],
    );
    for (const c of chunks) {
      assert.equal(c.object, 'text_completion');
      assert.equal(c.id, chunks[0].id);
      assert.equal('usage' in c, false);
    }
    assert.ok(res.body.endsWith('data: [DONE]\n\n'));
  });

  test('streaming with include_usage: usage null on chunks, usage chunk with choices [] before [DONE]', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/v1/completions', completion({ stream: true, max_tokens: 2, n: 2, stream_options: { include_usage: true } }));
    const events = sseEvents(res.body) as any[];
    assert.equal(events.at(-1), '[DONE]');
    const usage = events.at(-2);
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 });
    for (const c of events.slice(0, -2)) assert.equal(c.usage, null);
    const finished = events.slice(0, -2).filter((c) => c.choices[0].finish_reason !== null);
    assert.deepEqual(finished.map((c) => c.choices[0].index).sort(), [0, 1]);
  });

  test('streaming logprobs come with each chunk', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/v1/completions', completion({ stream: true, max_tokens: 2, logprobs: 1, temperature: 0 }));
    const chunks = (sseEvents(res.body) as any[]).slice(0, -1);
    assert.deepEqual(chunks[1].choices[0].logprobs, { tokens: ['h'], token_logprobs: [-0.25], top_logprobs: [{ h: -0.25 }], text_offset: [1] });
  });
});
