import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FAKE_LOGPROB, FAKE_MODEL_ID, FAKE_OUTPUT } from './fake-engine.ts';
import { chat, makeApp, post, sseEvents } from './helpers.ts';

describe('POST /v1/chat/completions', () => {
  test('non-streaming: chat template applied, OpenAI shape, the context left as default limit', async () => {
    const { app, engine } = await makeApp();
    const res = await post(
      app,
      '/v1/chat/completions',
      chat({
        temperature: 0,
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] },
        ],
      }),
    );
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.match(body.id, /^chatcmpl-[0-9a-f]{32}$/);
    assert.equal(body.object, 'chat.completion');
    assert.equal(body.model, FAKE_MODEL_ID);
    assert.deepEqual(body.choices, [
      { index: 0, message: { role: 'assistant', content: FAKE_OUTPUT.slice(0, 12) }, logprobs: null, finish_reason: 'stop' },
    ]);
    const prompt = '<system>be brief<user>a\nb<assistant>';
    assert.equal(engine.requests[0].prompt, prompt);
    assert.equal(engine.requests[0].maxTokens, engine.info.contextLength - prompt.length);
    assert.deepEqual(body.usage, { prompt_tokens: prompt.length, completion_tokens: 12, total_tokens: prompt.length + 12 });
  });

  test('a prompt that nearly fills the context still gets the rest as its default budget', async () => {
    const { app, engine } = await makeApp();
    const content = 'x'.repeat(engine.info.contextLength - '<user><assistant>'.length - 3);
    const res = await post(app, '/v1/chat/completions', chat({ messages: [{ role: 'user', content }] }));
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(engine.requests[0].maxTokens, 3);
    assert.equal(res.json().choices[0].finish_reason, 'length');
  });

  test('max_completion_tokens wins over max_tokens; either gives finish_reason length', async () => {
    const { app, engine } = await makeApp();
    const res = await post(app, '/v1/chat/completions', chat({ max_tokens: 9, max_completion_tokens: 3 }));
    assert.equal(res.json().choices[0].finish_reason, 'length');
    assert.equal(engine.requests[0].maxTokens, 3);
    await post(app, '/v1/chat/completions', chat({ max_tokens: 4 }));
    assert.equal(engine.requests[1].maxTokens, 4);
  });

  test('logprobs + top_logprobs: chat logprobs format with bytes', async () => {
    const { app, engine } = await makeApp();
    const res = await post(app, '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 2, max_tokens: 2, temperature: 0 }));
    assert.equal(engine.requests[0].logprobs, 2);
    assert.deepEqual(res.json().choices[0].logprobs, {
      content: [
        {
          token: 't',
          logprob: FAKE_LOGPROB,
          bytes: [116],
          top_logprobs: [
            { token: 't', logprob: -0.25, bytes: [116] },
            { token: 'alt1', logprob: -1.25, bytes: [97, 108, 116, 49] },
          ],
        },
        {
          token: 'h',
          logprob: FAKE_LOGPROB,
          bytes: [104],
          top_logprobs: [
            { token: 'h', logprob: -0.25, bytes: [104] },
            { token: 'alt1', logprob: -1.25, bytes: [97, 108, 116, 49] },
          ],
        },
      ],
    });
    await post(app, '/v1/chat/completions', chat({ logprobs: true }));
    assert.equal(engine.requests[1].logprobs, 0);
    await post(app, '/v1/chat/completions', chat({ logprobs: false }));
    assert.equal(engine.requests[2].logprobs, null);
  });

  test('n > 1 gives distinct seeded choices', async () => {
    const { app, engine } = await makeApp();
    const res = await post(app, '/v1/chat/completions', chat({ n: 2, seed: 3, max_tokens: 4 }));
    const choices = res.json().choices;
    assert.deepEqual(
      choices.map((c: { index: number }) => c.index),
      [0, 1],
    );
    assert.deepEqual(
      engine.requests.map((r) => r.sampling.seed),
      [3, 4],
    );
    assert.notEqual(choices[0].message.content, choices[1].message.content);
  });

  test('streaming: role chunk first, content deltas, finish_reason last with empty delta, [DONE]', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/v1/chat/completions', chat({ stream: true, max_tokens: 3, temperature: 0 }));
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    const events = sseEvents(res.body) as any[];
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1);
    assert.deepEqual(
      chunks.map((c) => [c.choices[0].delta, c.choices[0].finish_reason]),
      [
        [{ role: 'assistant', content: '' }, null],
        [{ content: 't' }, null],
        [{ content: 'h' }, null],
        [{ content: 'e' }, null],
        [{}, 'length'],
      ],
    );
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.id, chunks[0].id);
      assert.equal(c.model, FAKE_MODEL_ID);
      assert.equal(c.choices[0].logprobs, null);
    }
  });

  test('streaming n=2 with include_usage: each choice has role first and finish last; usage chunk last', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/v1/chat/completions', chat({ stream: true, n: 2, max_tokens: 2, stream_options: { include_usage: true } }));
    const events = sseEvents(res.body) as any[];
    assert.equal(events.at(-1), '[DONE]');
    const usageChunk = events.at(-2);
    assert.deepEqual(usageChunk.choices, []);
    assert.equal(usageChunk.usage.completion_tokens, 4);
    for (const index of [0, 1]) {
      const mine = events.slice(0, -2).filter((c) => c.choices[0].index === index);
      assert.deepEqual(mine[0].choices[0].delta, { role: 'assistant', content: '' });
      assert.equal(mine.at(-1).choices[0].finish_reason, 'length');
      assert.equal(mine.filter((c) => c.choices[0].finish_reason !== null).length, 1);
    }
  });

  test('streaming speculation stats ride on the finish chunk', async () => {
    const speculation = { drafter: 'hydra', draftSteps: 2, draftTokens: 6, acceptedTokens: 3, meanAcceptanceLength: 2.5 };
    const { app } = await makeApp({ fake: { speculation } });
    const res = await post(app, '/v1/chat/completions', chat({ stream: true, max_tokens: 2, speculative: { drafter: 'hydra' } }));
    const chunks = (sseEvents(res.body) as any[]).slice(0, -1);
    assert.deepEqual(chunks.at(-1).speculative, [
      { index: 0, drafter: 'hydra', draft_steps: 2, draft_tokens: 6, accepted_tokens: 3, mean_acceptance_length: 2.5, acceptance: 'lossless' },
    ]);
    assert.equal(chunks[0].speculative, undefined);
  });
});
