// End-to-end tier: the real server process (the CLI), the real default model, the official
// `openai` client and raw HTTP.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { metric, startServer, type RunningServer } from '../helpers/server.ts';

const MODEL = 'specserve-tiny';
let server: RunningServer;
let client: OpenAI;

before(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  await server?.stop();
});

async function post(path: string, body: unknown) {
  const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

describe('openai client against the real model', () => {
  test('completions, streaming and not, give the same greedy text', async () => {
    const prompt = 'def fibonacci(n):\n';
    const plain = await client.completions.create({ model: MODEL, prompt, max_tokens: 40, temperature: 0 });
    assert.equal(plain.object, 'text_completion');
    assert.equal(plain.choices[0].finish_reason === 'length' || plain.choices[0].finish_reason === 'stop', true);
    assert.ok(plain.choices[0].text.length > 0);
    assert.ok(plain.usage!.prompt_tokens > 0);
    const stream = await client.completions.create({ model: MODEL, prompt, max_tokens: 40, temperature: 0, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, plain.choices[0].text);
    assert.equal(finish, plain.choices[0].finish_reason);
    const again = await client.completions.create({ model: MODEL, prompt, max_tokens: 40, temperature: 0 });
    assert.equal(again.choices[0].text, plain.choices[0].text, 'greedy output differs across runs');
  });

  test('chat completions and the chat.completions.stream() helper', async () => {
    const messages = [{ role: 'user' as const, content: 'sorted([3, 1, 2])' }];
    const res = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 24, temperature: 0 });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.choices[0].message.role, 'assistant');
    const runner = client.chat.completions.stream({ model: MODEL, messages, max_tokens: 24, temperature: 0 });
    let deltas = '';
    runner.on('content', (d) => (deltas += d));
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.content, res.choices[0].message.content);
    assert.equal(deltas, res.choices[0].message.content);
    assert.ok(final.choices[0].finish_reason);
  });

  test('seeded sampling is reproducible; different seeds differ', async () => {
    const ask = (seed: number) => client.completions.create({ model: MODEL, prompt: 'The json module', max_tokens: 24, temperature: 1, seed });
    const a = await ask(42);
    const b = await ask(42);
    const c = await ask(43);
    assert.equal(a.choices[0].text, b.choices[0].text);
    assert.notEqual(a.choices[0].text, c.choices[0].text);
  });

  test('speculative decoding through the API: same greedy text, stats in the response', async () => {
    const prompt = 'Original: The socket module provides access to the BSD socket interface.\nRewrite: The socket module';
    const plain = await post('/v1/completions', { model: MODEL, prompt, max_tokens: 48, temperature: 0, speculative: { drafter: 'none' } });
    for (const drafter of ['prompt-lookup', 'aded']) {
      const spec = await post('/v1/completions', { model: MODEL, prompt, max_tokens: 48, temperature: 0, speculative: { drafter, max_draft_tokens: 6 } });
      assert.equal(spec.status, 200);
      assert.equal(spec.body.choices[0].text, plain.body.choices[0].text, `${drafter} changed the output`);
      assert.equal(spec.body.speculative[0].drafter, drafter);
      assert.equal(spec.body.speculative[0].acceptance, 'lossless');
    }
    const drafters = await (await fetch(`${server.url}/v1/drafters`)).json();
    assert.ok(drafters.data.some((d: { name: string; available: boolean }) => d.name === 'aded' && d.available));
    assert.ok((await metric(server.url, 'specserve_spec_decode_num_draft_tokens_total')) > 0);
    // the goodput policy measured single-sequence steps and exports the cap it settled on
    let cap: number | null = null;
    for (let i = 0; i < 20 && cap === null; i++) {
      cap = await metric(server.url, 'specserve_spec_draft_cap', 'drafter="aded",batch_class="1"').catch(() => null);
      if (cap === null) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(cap !== null && [0, 1, 2, 4, 8].includes(cap), `draft cap ${cap}`);
  });

  test('the KV usage gauge an inference pool reads stays within 0 to 1 and rises while a request holds the cache', async () => {
    const idle = await metric(server.url, 'specserve_kv_cache_usage_perc');
    assert.ok(idle >= 0 && idle <= 1, `idle usage ${idle}`);
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'x '.repeat(400), max_tokens: 400, ignore_eos: true, stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read(); // the request is admitted and holds its blocks
    let busy = 0;
    for (let i = 0; i < 40 && busy <= idle; i++) {
      busy = await metric(server.url, 'specserve_kv_cache_usage_perc');
      if (busy <= idle) await new Promise((r) => setTimeout(r, 50));
    }
    await reader.cancel();
    assert.ok(busy > idle && busy <= 1, `usage ${idle} idle, ${busy} while decoding`);
  });

  test('LANTERN is used only when asked for, and the response says so', async () => {
    const prompt = 'The json module provides The JSON Module and the json module';
    const lossless = await post('/v1/completions', { model: MODEL, prompt, max_tokens: 32, temperature: 0, speculative: { drafter: 'aded' } });
    assert.equal(lossless.body.speculative[0].acceptance, 'lossless');
    assert.equal(lossless.body.speculative[0].lossy, undefined);
    const lossy = await post('/v1/completions', {
      model: MODEL, prompt, max_tokens: 32, temperature: 0, speculative: { drafter: 'aded', acceptance: 'lantern', lantern_k: 4, lantern_delta: 0.2 },
    });
    assert.equal(lossy.status, 200);
    assert.equal(lossy.body.speculative[0].acceptance, 'lantern');
    assert.deepEqual(Object.keys(lossy.body.speculative[0].lossy).sort(), ['delta', 'k', 'policy', 'relaxed_steps']);
    assert.equal(lossy.body.speculative[0].lossy.delta, 0.2);
  });

  test('a request ended by a stop string still counts in the per-request KV histogram', async () => {
    const count = () => metric(server.url, 'specserve_kv_request_peak_bytes_count').catch(() => 0);
    const before = await count();
    const r = await post('/v1/completions', { model: MODEL, prompt: 'import os\nimport sys\n', max_tokens: 64, temperature: 0, stop: ['\n'] });
    assert.equal(r.body.choices[0].finish_reason, 'stop');
    assert.ok(r.body.usage.completion_tokens < 64 && !r.body.choices[0].text.includes('\n'), 'the stop string ended it');
    let after = await count();
    for (let i = 0; i < 20 && after === before; i++) {
      await new Promise((res) => setTimeout(res, 100));
      after = await count();
    }
    assert.equal(after, before + 1);
  });

  test('a stop string ends speculative decoding where it ends plain decoding, with its statistics', async () => {
    const body = { model: MODEL, prompt: 'import os\nimport sys\nimport re\n', max_tokens: 64, temperature: 0, stop: ['\nimport s'] };
    const plain = await post('/v1/completions', { ...body, speculative: { drafter: 'none' } });
    const spec = await post('/v1/completions', { ...body, speculative: { drafter: 'prompt-lookup' } });
    assert.equal(spec.body.choices[0].finish_reason, 'stop');
    assert.equal(spec.body.choices[0].text, plain.body.choices[0].text);
    assert.equal(spec.body.usage.completion_tokens, plain.body.usage.completion_tokens);
    // the worker checks stop strings, so a stop-ended request has a done message and its stats
    const stats = spec.body.speculative[0];
    assert.equal(stats.drafter, 'prompt-lookup');
    assert.equal(stats.mean_acceptance_length, stats.draft_steps ? 1 + stats.accepted_tokens / stats.draft_steps : 1);
  });

  test('logprobs and echo with max_tokens 0 score a prompt', async () => {
    const res = await post('/v1/completions', { model: MODEL, prompt: 'import os\nimport sys\n', max_tokens: 0, echo: true, logprobs: 2 });
    assert.equal(res.status, 200);
    const lp = res.body.choices[0].logprobs;
    assert.equal(res.body.choices[0].text, 'import os\nimport sys\n');
    assert.equal(lp.token_logprobs[0], null);
    assert.ok(lp.token_logprobs.slice(1).every((x: number) => x <= 0));
    assert.equal(lp.tokens.length, res.body.usage.prompt_tokens);
  });
});

describe('bad input never hurts the server', () => {
  test('errors name the field and the server keeps serving', async () => {
    const long = 'x '.repeat(3000);
    const cases: [unknown, number, string | null][] = [
      [{ model: MODEL, prompt: 'a', max_tokens: -5 }, 400, 'max_tokens'],
      [{ model: MODEL, prompt: 'a', max_tokens: 1e9 }, 400, 'max_tokens'],
      [{ model: 'nope', prompt: 'a' }, 404, 'model'],
      [{ model: MODEL, prompt: long, max_tokens: 4 }, 400, 'prompt'],
      [{ model: MODEL, prompt: 'a', stream_options: { include_usage: true } }, 400, 'stream_options'],
      [{ model: MODEL, prompt: 'a', speculative: { drafter: 'nope' } }, 400, 'speculative.drafter'],
    ];
    for (const [body, status, param] of cases) {
      const res = await post('/v1/completions', body);
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.error.param, param);
    }
    const tooLong = await post('/v1/completions', { model: MODEL, prompt: long, max_tokens: 4 });
    assert.match(tooLong.body.error.message, /1024/);
    const chat = await post('/v1/chat/completions', { model: MODEL, messages: [] });
    assert.equal(chat.status, 400);
    assert.equal(chat.body.error.param, 'messages');
    const bad = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' });
    assert.equal(bad.status, 400);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const ok = await client.completions.create({ model: MODEL, prompt: 'x = ', max_tokens: 4, temperature: 0 });
    assert.equal(ok.choices.length, 1);
  });
});
