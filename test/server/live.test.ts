// Over a real socket: the official openai client, client disconnects, graceful shutdown.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { shutdownGracefully } from '../../src/server/shutdown.ts';
import { FAKE_MODEL_ID, FAKE_OUTPUT, type FakeEngine } from './fake-engine.ts';
import { closeNow, makeApp, sseEvents } from './helpers.ts';

const API_KEY = 'sk-live-test';

async function listen(app: FastifyInstance): Promise<string> {
  return app.listen({ port: 0, host: '127.0.0.1' });
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('official openai client', () => {
  let app: FastifyInstance;
  let client: OpenAI;

  before(async () => {
    ({ app } = await makeApp({ config: { apiKey: API_KEY } }));
    client = new OpenAI({ baseURL: `${await listen(app)}/v1`, apiKey: API_KEY, maxRetries: 0 });
  });
  after(() => closeNow(app));

  test('completions.create', async () => {
    const res = await client.completions.create({ model: FAKE_MODEL_ID, prompt: 'hello', max_tokens: 5, temperature: 0 });
    assert.equal(res.choices[0].text, FAKE_OUTPUT.slice(0, 5));
    assert.equal(res.choices[0].finish_reason, 'length');
    assert.equal(res.usage?.total_tokens, 10);
  });

  test('completions.create streaming', async () => {
    const stream = await client.completions.create({ model: FAKE_MODEL_ID, prompt: 'hello', max_tokens: 4, temperature: 0, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0].text;
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    assert.equal(text, FAKE_OUTPUT.slice(0, 4));
    assert.equal(finish, 'length');
  });

  test('chat.completions.create', async () => {
    const res = await client.chat.completions.create({ model: FAKE_MODEL_ID, messages: [{ role: 'user', content: 'hi' }], temperature: 0 });
    assert.equal(res.choices[0].message.role, 'assistant');
    assert.equal(res.choices[0].message.content, FAKE_OUTPUT.slice(0, 12));
    assert.equal(res.choices[0].finish_reason, 'stop');
  });

  test('chat.completions.create streaming with usage', async () => {
    const stream = await client.chat.completions.create({
      model: FAKE_MODEL_ID,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 6,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, FAKE_OUTPUT.slice(0, 6));
    assert.equal(usage?.completion_tokens, 6);
  });

  test('chat.completions.stream() helper and finalChatCompletion()', async () => {
    const runner = client.chat.completions.stream({
      model: FAKE_MODEL_ID,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 7,
      temperature: 0,
      logprobs: true,
      top_logprobs: 1,
    });
    const deltas: string[] = [];
    runner.on('content', (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.content, FAKE_OUTPUT.slice(0, 7));
    assert.equal(final.choices[0].finish_reason, 'length');
    assert.equal(final.choices[0].logprobs?.content?.length, 7);
    assert.equal(deltas.join(''), FAKE_OUTPUT.slice(0, 7));
  });

  test('errors surface as typed SDK errors with code and param', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.NotFoundError);
        assert.equal(error.code, 'model_not_found');
        assert.equal(error.param, 'model');
        return true;
      },
    );
    await assert.rejects(client.completions.create({ model: FAKE_MODEL_ID, prompt: 'x', max_tokens: -3 }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.BadRequestError);
      assert.equal(error.param, 'max_tokens');
      return true;
    });
    const anonymous = new OpenAI({ baseURL: client.baseURL, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(anonymous.models.list(), OpenAI.AuthenticationError);
  });

  test('models.list and models.retrieve', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      [FAKE_MODEL_ID],
    );
    assert.equal((await client.models.retrieve(FAKE_MODEL_ID)).owned_by, 'specserve');
  });
});

describe('client disconnects abort the engine', () => {
  let app: FastifyInstance;
  let engine: FakeEngine;
  let url: string;

  before(async () => {
    ({ app, engine } = await makeApp({ fake: { tokenDelayMs: 20, eosAfter: 10_000 } }));
    url = await listen(app);
  });
  after(() => closeNow(app));

  test('streaming: fetch aborted after the first chunk', async () => {
    const before = engine.abortedGenerations;
    const controller = new AbortController();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: FAKE_MODEL_ID, messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 200 }),
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /"role":"assistant"/);
    controller.abort();
    await waitFor(() => engine.abortedGenerations === before + 1, 'the engine to see the abort');
    assert.equal(engine.running, 0);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /specserve_requests_total\{route="\/v1\/chat\/completions",status="499"\} 1/);
  });

  test('streaming with n=3: every choice is aborted', async () => {
    const before = engine.abortedGenerations;
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.completions.create({ model: FAKE_MODEL_ID, prompt: 'x', n: 3, max_tokens: 200, stream: true });
    for await (const _chunk of stream) break; // leaving the loop aborts the request
    await waitFor(() => engine.abortedGenerations === before + 3, 'all three choices to abort');
  });

  test('non-streaming: fetch aborted while generating', async () => {
    const before = engine.abortedGenerations;
    const controller = new AbortController();
    const pending = fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: FAKE_MODEL_ID, prompt: 'x', max_tokens: 200 }),
      signal: controller.signal,
    });
    await waitFor(() => engine.running === 1, 'generation to start');
    controller.abort();
    await assert.rejects(pending);
    await waitFor(() => engine.abortedGenerations === before + 1, 'the engine to see the abort');
  });
});

describe('graceful shutdown', () => {
  const streamRequest = (url: string, maxTokens: number) =>
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: FAKE_MODEL_ID, prompt: 'x', stream: true, max_tokens: maxTokens, temperature: 0 }),
    });

  test('in-flight streams finish, then the engine closes; new connections are refused', async () => {
    const { app, engine } = await makeApp({ fake: { tokenDelayMs: 10, eosAfter: 10_000 } });
    const url = await listen(app);
    const res = await streamRequest(url, 20);
    await waitFor(() => engine.running === 1, 'generation to start');
    const started = Date.now();
    const shutdown = shutdownGracefully(app, engine, 5000);
    const body = await res.text();
    const events = sseEvents(body) as any[];
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(events.map((e) => e.choices?.[0]?.text ?? '').join(''), FAKE_OUTPUT.slice(0, 20));
    await shutdown;
    // No waiting for the client's keep-alive timeout once the stream is done.
    assert.ok(Date.now() - started < 2000, `shutdown took ${Date.now() - started} ms`);
    assert.equal(engine.closed, true);
    await assert.rejects(fetch(`${url}/health`));
  });

  for (const onAbort of ['throw', 'end'] as const) {
    test(`streams still running at the deadline end with a shutting_down error event (engine ${onAbort}s on abort)`, async () => {
      const { app, engine } = await makeApp({ fake: { tokenDelayMs: 10, eosAfter: 10_000, onAbort } });
      const url = await listen(app);
      const res = await streamRequest(url, 250);
      await waitFor(() => engine.running === 1, 'generation to start');
      const started = Date.now();
      await shutdownGracefully(app, engine, 200);
      assert.ok(Date.now() - started < 3000);
      const events = sseEvents(await res.text()) as any[];
      assert.equal(events.at(-1), '[DONE]');
      assert.equal(events.at(-2).error.code, 'shutting_down');
      assert.equal(engine.abortedGenerations, 1);
      assert.equal(engine.closed, true);
    });
  }
});
