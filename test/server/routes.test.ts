import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FAKE_MODEL_ID, FakeEngine } from './fake-engine.ts';
import { chat, completion, makeApp, post, type ErrorBody } from './helpers.ts';

describe('models', () => {
  test('GET /v1/models lists the one model', async () => {
    const { app } = await makeApp();
    const res = await app.inject({ method: 'GET', url: '/v1/models' });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.object, 'list');
    assert.equal(body.data.length, 1);
    const { created, ...card } = body.data[0];
    assert.deepEqual(card, { id: FAKE_MODEL_ID, object: 'model', owned_by: 'specserve', max_model_len: 256 });
    assert.ok(Number.isInteger(created) && Math.abs(created - Date.now() / 1000) < 5);
  });

  test('GET /v1/models/:id, ids with slashes, unknown id 404', async () => {
    const { app } = await makeApp({ fake: { info: { modelId: 'org/tiny' } } });
    const res = await app.inject({ method: 'GET', url: '/v1/models/org/tiny' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().id, 'org/tiny');
    const missing = await app.inject({ method: 'GET', url: '/v1/models/other' });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json<ErrorBody>().error.code, 'model_not_found');
  });

  test('GET /v1/drafters', async () => {
    const { app, engine } = await makeApp();
    const res = await app.inject({ method: 'GET', url: '/v1/drafters' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { object: 'list', default: 'none', data: engine.drafters() });
  });
});

describe('tokenize / detokenize', () => {
  test('POST /tokenize with a prompt', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/tokenize', { prompt: 'hi' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { tokens: [104, 105], count: 2, max_model_len: 256 });
  });

  test('POST /tokenize with messages counts what chat would send', async () => {
    const { app, engine } = await makeApp();
    const messages = [{ role: 'user', content: [{ type: 'text', text: 'x' }] }];
    const res = await post(app, '/tokenize', { model: FAKE_MODEL_ID, messages });
    const expected = engine.tokenize('<user>x<assistant>');
    assert.deepEqual(res.json().tokens, expected);
    await post(app, '/v1/chat/completions', chat({ messages, max_tokens: 1 }));
    assert.equal(engine.requests[0].prompt, '<user>x<assistant>');
  });

  test('POST /tokenize needs exactly one of prompt and messages; checks the model', async () => {
    const { app } = await makeApp();
    for (const body of [{}, { prompt: 'a', messages: [{ role: 'user', content: 'b' }] }]) {
      const res = await post(app, '/tokenize', body);
      assert.equal(res.statusCode, 400);
      assert.equal(res.json<ErrorBody>().error.param, 'prompt');
    }
    assert.equal((await post(app, '/tokenize', { prompt: 'a', model: 'other' })).statusCode, 404);
  });

  test('POST /detokenize', async () => {
    const { app } = await makeApp();
    const res = await post(app, '/detokenize', { tokens: [104, 105] });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { prompt: 'hi' });
    const bad = await post(app, '/detokenize', { tokens: [1, 300] });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json<ErrorBody>().error.param, 'tokens.1');
    const wrong = await post(app, '/detokenize', { tokens: 'hi' });
    assert.equal(wrong.json<ErrorBody>().error.param, 'tokens');
  });
});

describe('health and loading', () => {
  test('while the engine loads: /health 503, model routes 503 model_loading with Retry-After', async () => {
    let engine: FakeEngine | undefined;
    const { buildApp } = await import('../../src/server/app.ts');
    const { TEST_CONFIG } = await import('./helpers.ts');
    const app = await buildApp({ getEngine: () => engine, config: TEST_CONFIG });
    const health = await app.inject({ method: 'GET', url: '/health' });
    assert.equal(health.statusCode, 503);
    assert.equal(health.json<ErrorBody>().error.code, 'model_loading');
    assert.ok(Number(health.headers['retry-after']) > 0);
    for (const [method, url, body] of [
      ['POST', '/v1/completions', completion()],
      ['POST', '/v1/chat/completions', chat()],
      ['GET', '/v1/models', undefined],
      ['GET', `/v1/models/${FAKE_MODEL_ID}`, undefined],
      ['POST', '/tokenize', { prompt: 'x' }],
      ['POST', '/detokenize', { tokens: [1] }],
      ['GET', '/v1/drafters', undefined],
      // Rejected before the body is read: even invalid JSON gets the 503.
      ['POST', '/v1/completions', '{not json'],
    ] as const) {
      const res = await app.inject({ method, url, payload: body as string, headers: body ? { 'content-type': 'application/json' } : {} });
      assert.equal(res.statusCode, 503, `${method} ${url}`);
      assert.equal(res.json<ErrorBody>().error.code, 'model_loading');
      assert.ok(res.headers['retry-after']);
    }
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);

    engine = new FakeEngine();
    const ready = await app.inject({ method: 'GET', url: '/health' });
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(ready.json(), { status: 'ok', model: FAKE_MODEL_ID, provider: 'cpu', dtype: 'fp32', layout: 'speculative' });
    assert.equal((await post(app, '/v1/completions', completion())).statusCode, 200);
  });

  test('draining: new requests 503 shutting_down, /metrics still served', async () => {
    const { app } = await makeApp();
    app.specserve.beginShutdown();
    for (const url of ['/health', '/v1/models']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 503);
      assert.equal(res.json<ErrorBody>().error.code, 'shutting_down');
      assert.ok(res.headers['retry-after']);
    }
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
  });
});

describe('request ids', () => {
  test('x-request-id is honoured when sane, generated otherwise', async () => {
    const { app } = await makeApp();
    const given = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'abc-123' } });
    assert.equal(given.headers['x-request-id'], 'abc-123');
    const insane = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'a b\nc' } });
    assert.match(String(insane.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    const streamed = await post(app, '/v1/completions', completion({ stream: true }), { 'x-request-id': 'stream-1' });
    assert.equal(streamed.headers['x-request-id'], 'stream-1');
  });
});

describe('auth', () => {
  const KEY = 'sk-test-key';

  test('configured key: missing or wrong → 401 invalid_api_key; right → 200', async () => {
    const { app } = await makeApp({ config: { apiKey: KEY } });
    const missing = await post(app, '/v1/completions', completion());
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.json<ErrorBody>().error.code, 'invalid_api_key');
    assert.equal(missing.json<ErrorBody>().error.type, 'authentication_error');
    for (const authorization of [`Bearer ${KEY}x`, 'Bearer sk', `Basic ${KEY}`, KEY, 'Bearer ']) {
      const res = await post(app, '/v1/completions', completion(), { authorization });
      assert.equal(res.statusCode, 401, authorization);
    }
    assert.equal((await post(app, '/v1/completions', completion(), { authorization: `Bearer ${KEY}` })).statusCode, 200);
    assert.equal((await post(app, '/v1/completions', completion(), { authorization: `bearer  ${KEY}` })).statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/models' })).statusCode, 401);
    // Auth runs before validation, so an unauthenticated client learns nothing about the body.
    assert.equal((await post(app, '/v1/completions', { bogus: true })).statusCode, 401);
  });

  test('/health and /metrics are public', async () => {
    const { app } = await makeApp({ config: { apiKey: KEY } });
    assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
  });

  test('no key configured: no header needed', async () => {
    const { app } = await makeApp();
    assert.equal((await post(app, '/v1/completions', completion())).statusCode, 200);
  });
});

describe('metrics', () => {
  test('request, token, latency and speculation metrics are recorded', async () => {
    const speculation = { drafter: 'hydra', draftSteps: 3, draftTokens: 12, acceptedTokens: 7, meanAcceptanceLength: 3.33 };
    const timing = { decodeSteps: 4, draftMs: 6, forwardMs: 10, verifiedTokens: 16 };
    const { app } = await makeApp({ fake: { speculation, timing } });
    await post(app, '/v1/completions', completion({ prompt: ['ab', 'cde'], n: 2, max_tokens: 4 }));
    await post(app, '/v1/chat/completions', chat({ stream: true, max_tokens: 3 }));
    await post(app, '/v1/completions', completion({ max_tokens: -1 }));
    await app.inject({ method: 'GET', url: '/nope' });
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    const text = res.body;
    const value = (line: string) => {
      const found = text.split('\n').find((l) => l.startsWith(`${line} `));
      assert.ok(found, `no ${line} in\n${text}`);
      return Number(found.split(' ').at(-1));
    };
    assert.equal(value('specserve_requests_total{route="/v1/completions",status="200"}'), 1);
    assert.equal(value('specserve_requests_total{route="/v1/completions",status="400"}'), 1);
    assert.equal(value('specserve_requests_total{route="/v1/chat/completions",status="200"}'), 1);
    assert.equal(value('specserve_requests_total{route="unmatched",status="404"}'), 1);
    assert.equal(value('specserve_generation_tokens_total'), 4 * 4 + 3);
    // prompts "ab" and "cde" once each, plus the chat prompt
    assert.equal(value('specserve_prompt_tokens_total'), 2 + 3 + '<user>hi<assistant>'.length);
    assert.equal(value('specserve_time_to_first_token_seconds_count'), 2);
    assert.equal(value('specserve_inter_token_latency_seconds_count'), 4 * 3 + 2);
    assert.equal(value('specserve_request_duration_seconds_count{route="/v1/chat/completions"}'), 1);
    assert.equal(value('specserve_spec_decode_num_drafts_total{drafter="hydra"}'), 5 * 3);
    assert.equal(value('specserve_spec_decode_num_draft_tokens_total{drafter="hydra"}'), 5 * 12);
    assert.equal(value('specserve_spec_decode_num_accepted_tokens_total{drafter="hydra"}'), 5 * 7);
    // five finished choices (the rejected request never ran)
    assert.equal(value('specserve_decode_steps_total{drafter="hydra"}'), 5 * 4);
    assert.ok(Math.abs(value('specserve_decode_draft_seconds_total{drafter="hydra"}') - 5 * 0.006) < 1e-9);
    assert.ok(Math.abs(value('specserve_decode_forward_seconds_total{drafter="hydra"}') - 5 * 0.01) < 1e-9);
    assert.equal(value('specserve_requests_running'), 0);
    assert.equal(value('specserve_requests_waiting'), 0);
  });

  test('an echoed prompt does not count as the first token', async () => {
    const { app } = await makeApp();
    await post(app, '/v1/completions', completion({ echo: true, max_tokens: 0 }));
    await post(app, '/v1/completions', completion({ echo: true, max_tokens: 2 }));
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(text, /^specserve_time_to_first_token_seconds_count 1$/m);
    assert.match(text, /^specserve_inter_token_latency_seconds_count 1$/m);
  });

  test('running/waiting gauges come from engine.load()', async () => {
    const engine = new FakeEngine();
    engine.load = () => ({ running: 3, waiting: 7 });
    const { app } = await makeApp({ engine });
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(text, /^specserve_requests_running 3$/m);
    assert.match(text, /^specserve_requests_waiting 7$/m);
  });

  test('the registry is shared: a metric registered into it is served', async () => {
    const { Counter } = await import('prom-client');
    const { app } = await makeApp();
    new Counter({ name: 'specserve_engine_steps_total', help: 'x', registers: [app.specserve.metrics.registry] }).inc(2);
    assert.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /^specserve_engine_steps_total 2$/m);
  });
});

describe('back-pressure', () => {
  test('a blocked event loop gives 503 overloaded with Retry-After; /metrics still answers', async () => {
    const { app } = await makeApp({ config: { maxEventLoopDelayMs: 1 } });
    await app.ready();
    // Keep the loop lagging until under-pressure's once-a-second sample notices.
    const busy = setInterval(() => {
      const until = Date.now() + 30;
      while (Date.now() < until);
    }, 5);
    let probe = await app.inject({ method: 'GET', url: '/health' });
    for (let tries = 0; probe.statusCode === 200 && tries < 40; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      probe = await app.inject({ method: 'GET', url: '/health' });
    }
    clearInterval(busy);
    const res = probe;
    assert.equal(res.statusCode, 503, res.body);
    assert.equal(res.json<ErrorBody>().error.code, 'overloaded');
    assert.ok(Number(res.headers['retry-after']) > 0);
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
    await app.close();
  });
});
