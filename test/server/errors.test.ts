import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApiError, ERRORS } from '../../src/errors.ts';
import { errorTableMarkdown } from '../../src/server/errors-doc.ts';
import { FakeEngine } from './fake-engine.ts';
import { chat, completion, makeApp, post, sseEvents, type ErrorBody } from './helpers.ts';

function assertError(res: { statusCode: number; json<T>(): T; body: string }, status: number, code: string, param?: string | null) {
  assert.equal(res.statusCode, status, res.body);
  const { error } = res.json<ErrorBody>();
  assert.equal(error.code, code);
  assert.equal(error.type, ERRORS[code as keyof typeof ERRORS].type);
  assert.equal(typeof error.message, 'string');
  if (param !== undefined) assert.equal(error.param, param);
  return error;
}

describe('error table', () => {
  test('errorTableMarkdown lists every code with its status and type', () => {
    const markdown = errorTableMarkdown();
    for (const [code, { status, type }] of Object.entries(ERRORS)) {
      const row = markdown.split('\n').find((line) => line.startsWith(`| \`${code}\` |`));
      assert.ok(row, `missing ${code}`);
      assert.ok(row.includes(`| ${status} |`) && row.includes(`\`${type}\``), row);
    }
    assert.equal(markdown.split('\n').length, Object.keys(ERRORS).length + 2);
  });

  test('every code uses an OpenAI error type that matches its status class', () => {
    for (const [code, { status, type }] of Object.entries(ERRORS)) {
      if (status >= 500) assert.equal(type, 'server_error', code);
      else assert.match(type, /^(invalid_request_error|authentication_error|rate_limit_error)$/, code);
    }
  });
});

describe('request validation → 400 naming the field', () => {
  const cases: [string, string, Record<string, unknown>, string, string?][] = [
    ['max_tokens wrong type', '/v1/completions', completion({ max_tokens: '5' }), 'max_tokens'],
    ['negative max_tokens', '/v1/completions', completion({ max_tokens: -1 }), 'max_tokens'],
    ['non-integer max_tokens', '/v1/completions', completion({ max_tokens: 1.5 }), 'max_tokens'],
    ['chat max_tokens 0', '/v1/chat/completions', chat({ max_tokens: 0 }), 'max_tokens'],
    ['temperature too high', '/v1/completions', completion({ temperature: 2.5 }), 'temperature'],
    ['top_p 0', '/v1/completions', completion({ top_p: 0 }), 'top_p'],
    ['n too large', '/v1/completions', completion({ n: 17 }), 'n'],
    ['logprobs over 20', '/v1/completions', completion({ logprobs: 21 }), 'logprobs'],
    ['too many stops', '/v1/completions', completion({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }), 'stop'],
    ['prompt wrong type', '/v1/completions', completion({ prompt: { text: 'x' } }), 'prompt'],
    ['empty prompt array', '/v1/completions', completion({ prompt: [] }), 'prompt'],
    ['mixed prompt array', '/v1/completions', completion({ prompt: ['a', 1] }), 'prompt.1'],
    ['negative token id', '/v1/completions', completion({ prompt: [1, -2] }), 'prompt.1'],
    ['missing model', '/v1/completions', { prompt: 'x' }, 'model'],
    ['missing prompt', '/v1/completions', { model: 'fake-model' }, 'prompt'],
    ['empty messages', '/v1/chat/completions', chat({ messages: [] }), 'messages'],
    ['bad role', '/v1/chat/completions', chat({ messages: [{ role: 'wizard', content: 'x' }] }), 'messages.0.role'],
    ['content wrong type', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: 5 }] }), 'messages.0.content'],
    ['text part without text', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: [{ type: 'text' }] }] }), 'messages.0.content.0.text'],
    ['stream_options without stream', '/v1/completions', completion({ stream_options: { include_usage: true } }), 'stream_options'],
    ['stream_options with stream false', '/v1/chat/completions', chat({ stream: false, stream_options: { include_usage: true } }), 'stream_options'],
    ['top_logprobs without logprobs', '/v1/chat/completions', chat({ top_logprobs: 2 }), 'top_logprobs'],
    ['min_tokens above max_tokens', '/v1/completions', completion({ min_tokens: 20, max_tokens: 5 }), 'min_tokens'],
    ['max_tokens beyond the context', '/v1/completions', completion({ max_tokens: 100_000 }), 'max_tokens'],
    ['max_completion_tokens beyond the context', '/v1/chat/completions', chat({ max_completion_tokens: 100_000 }), 'max_completion_tokens'],
    ['lantern knob without lantern', '/v1/completions', completion({ speculative: { drafter: 'hydra', lantern_k: 3 } }), 'speculative.lantern_k'],
    ['best_of below n', '/v1/completions', completion({ n: 3, best_of: 2 }), 'best_of'],
  ];
  for (const [name, url, body, param] of cases) {
    test(name, async () => {
      const { app, engine } = await makeApp();
      const error = assertError(await post(app, url, body), 400, 'invalid_request', param);
      assert.ok(error.message.includes(`'${param}'`), error.message);
      assert.equal(engine.requests.length, 0, 'the engine must not see an invalid request');
    });
  }

  test('the message names the field', async () => {
    const { app } = await makeApp();
    const error = assertError(await post(app, '/v1/completions', completion({ max_tokens: -1 })), 400, 'invalid_request', 'max_tokens');
    assert.match(error.message, /'max_tokens'/);
  });

  test('non-object body', async () => {
    const { app } = await makeApp();
    assertError(await post(app, '/v1/completions', [1, 2]), 400, 'invalid_request', null);
    const res = await app.inject({ method: 'POST', url: '/v1/completions' });
    assertError(res, 400, 'invalid_request', null);
  });
});

describe('unsupported parameters → 400 unsupported_parameter naming the field', () => {
  const cases: [string, string, Record<string, unknown>, string][] = [
    ['tools', '/v1/chat/completions', chat({ tools: [{ type: 'function', function: { name: 'f' } }] }), 'tools'],
    ['tool_choice required', '/v1/chat/completions', chat({ tool_choice: 'required' }), 'tool_choice'],
    ['response_format json', '/v1/chat/completions', chat({ response_format: { type: 'json_object' } }), 'response_format'],
    ['logit_bias', '/v1/completions', completion({ logit_bias: { '50256': -100 } }), 'logit_bias'],
    ['best_of > n', '/v1/completions', completion({ best_of: 3 }), 'best_of'],
    ['suffix', '/v1/completions', completion({ suffix: 'end' }), 'suffix'],
    ['image part', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image_url', image_url: { url: 'x' } }] }] }), 'messages.0.content.1.type'],
    ['assistant tool_calls', '/v1/chat/completions', chat({ messages: [{ role: 'assistant', content: '', tool_calls: [{ id: 'x' }] }] }), 'messages.0.tool_calls'],
    ['vLLM repetition_penalty', '/v1/completions', completion({ repetition_penalty: 1.2 }), 'repetition_penalty'],
  ];
  for (const [name, url, body, param] of cases) {
    test(name, async () => {
      const { app, engine } = await makeApp();
      const error = assertError(await post(app, url, body), 400, 'unsupported_parameter', param);
      assert.match(error.message, new RegExp(param.split('.').at(-1)!));
      assert.equal(engine.requests.length, 0);
    });
  }

  test('harmless defaults and unknown fields are accepted', async () => {
    const { app } = await makeApp();
    const res = await post(
      app,
      '/v1/chat/completions',
      chat({
        tools: [],
        tool_choice: 'none',
        response_format: { type: 'text' },
        logit_bias: {},
        repetition_penalty: 1,
        store: false,
        metadata: { a: 'b' },
        parallel_tool_calls: true,
        some_future_field: 1,
      }),
    );
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((await post(app, '/v1/completions', completion({ best_of: 1, suffix: '' }))).statusCode, 200);
  });
});

describe('other errors', () => {
  test('unknown model → 404 model_not_found', async () => {
    const { app } = await makeApp();
    const error = assertError(await post(app, '/v1/completions', completion({ model: 'gpt-4' })), 404, 'model_not_found', 'model');
    assert.match(error.message, /gpt-4/);
    assertError(await post(app, '/v1/chat/completions', chat({ model: 'gpt-4' })), 404, 'model_not_found', 'model');
  });

  test('invalid JSON → 400 invalid_json', async () => {
    const { app } = await makeApp();
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: '{"model": ', headers: { 'content-type': 'application/json' } });
    assertError(res, 400, 'invalid_json', null);
  });

  test('oversized body → 413 body_too_large', async () => {
    const { app } = await makeApp({ config: { bodyLimit: 1000 } });
    const error = assertError(await post(app, '/v1/completions', completion({ prompt: 'x'.repeat(2000) })), 413, 'body_too_large');
    assert.match(error.message, /1000/);
  });

  test('wrong content type → 415 unsupported_media_type', async () => {
    const { app } = await makeApp();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
      const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: 'model=x', headers: { 'content-type': type } });
      assertError(res, 415, 'unsupported_media_type');
    }
  });

  test('unknown route → 404 not_found in the error format', async () => {
    const { app } = await makeApp();
    const error = assertError(await app.inject({ method: 'GET', url: '/v1/nothing' }), 404, 'not_found', null);
    assert.match(error.message, /GET \/v1\/nothing/);
    assertError(await app.inject({ method: 'GET', url: '/v1/completions' }), 404, 'not_found');
  });

  test('engine ApiError context_length_exceeded → 400 with its message', async () => {
    const { app } = await makeApp({ fake: { info: { contextLength: 8 } } });
    for (const stream of [false, true]) {
      const error = assertError(await post(app, '/v1/completions', completion({ prompt: 'a long prompt', max_tokens: 1, stream })), 400, 'context_length_exceeded', 'prompt');
      assert.equal(error.message, "This model's maximum context length is 8 tokens, but the prompt has 13 tokens");
    }
  });

  test('engine plain Error → 500 internal_error without internals', async () => {
    const { app } = await makeApp({ fake: { failAtStart: new Error('secret internal detail at /opt/x.ts:12') } });
    for (const stream of [false, true]) {
      const res = await post(app, '/v1/chat/completions', chat({ stream }));
      const error = assertError(res, 500, 'internal_error', null);
      assert.equal(error.message, ERRORS.internal_error.message);
      assert.doesNotMatch(res.body, /secret|\.ts:|at /);
    }
  });

  test('queue_full from the engine → 429 with Retry-After', async () => {
    const { app } = await makeApp({ fake: { failAtStart: new ApiError('queue_full', undefined, null, 3) } });
    const res = await post(app, '/v1/completions', completion());
    assertError(res, 429, 'queue_full');
    assert.equal(res.headers['retry-after'], '3');
  });

  test('an error in one of n choices fails the request and aborts the others', async () => {
    const { app, engine } = await makeApp({ fake: { tokenDelayMs: 2, failAfter: { tokens: 3, error: new ApiError('request_timeout') } } });
    assertError(await post(app, '/v1/completions', completion({ n: 3, max_tokens: 10 })), 504, 'request_timeout');
  });

  test('error in the middle of a stream → data: {"error"} then [DONE]', async () => {
    const { app } = await makeApp({ fake: { failAfter: { tokens: 2, error: new Error('boom at /secret.ts:1') } } });
    const res = await post(app, '/v1/chat/completions', chat({ stream: true, max_tokens: 10, stream_options: { include_usage: true } }));
    assert.equal(res.statusCode, 200);
    const events = sseEvents(res.body) as any[];
    assert.deepEqual(events.slice(-2), [
      { error: { message: ERRORS.internal_error.message, type: 'server_error', param: null, code: 'internal_error' } },
      '[DONE]',
    ]);
    assert.equal(events.filter((e) => e.choices?.length === 0).length, 0, 'no usage chunk after an error');
    assert.doesNotMatch(res.body, /boom|secret/);
    assert.ok(res.body.endsWith('data: [DONE]\n\n'));
  });

  test('an ApiError mid-stream keeps its code', async () => {
    const { app } = await makeApp({ fake: { failAfter: { tokens: 1, error: new ApiError('engine_failed', 'worker crashed') } } });
    const events = sseEvents((await post(app, '/v1/completions', completion({ stream: true }))).body) as any[];
    assert.deepEqual(events.at(-2).error, { message: 'worker crashed', type: 'server_error', param: null, code: 'engine_failed' });
  });

  test('an engine that ends without a done event is engine_failed, not a hang', async () => {
    const engine = new FakeEngine();
    engine.generateText = async function* () {
      yield { type: 'text', text: 'x', tokenIds: [120] };
    };
    const { app } = await makeApp({ engine });
    assertError(await post(app, '/v1/completions', completion()), 500, 'engine_failed');
  });
});
