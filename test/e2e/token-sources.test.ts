// Per-token sources and smooth pacing through the real server and model (`include_token_sources`,
// `stream_options.pacing`).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createParser } from 'eventsource-parser';
import OpenAI from 'openai';
import { startServer, type RunningServer } from '../helpers/server.ts';

const MODEL = 'specserve-tiny';
/** Text the bundled model continues by repeating: prompt lookup's drafts land. */
const PROMPT = 'Original: The socket module provides access to the BSD socket interface.\nRewrite: The socket module';
let server: RunningServer;

before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

interface Source { text: string; source: 'draft' | 'target'; step: number; position: number; drafted: number; draft_cap: number; token_id: number; logprob?: number }

async function post(path: string, body: unknown) {
  const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** Every `data:` event of a stream, parsed, with the time it arrived. */
async function stream(path: string, body: unknown): Promise<{ at: number; data: any }[]> {
  const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body as object, stream: true }) });
  assert.equal(res.status, 200);
  const events: { at: number; data: any }[] = [];
  const parser = createParser({ onEvent: (e) => e.data !== '[DONE]' && events.push({ at: performance.now(), data: JSON.parse(e.data) }) });
  const decoder = new TextDecoder();
  for await (const chunk of res.body!) parser.feed(decoder.decode(chunk, { stream: true }));
  return events;
}

/** Distinct tokens (a token's text can be split over two stretches) and how many were drafted. */
function draftedTokens(sources: Source[]): number {
  return new Set(sources.filter((s) => s.source === 'draft').map((s) => `${s.step}:${s.position}`)).size;
}

describe('token sources', () => {
  test('non-streaming: the sources add up to each choice, and the drafted ones are the accepted drafts', async () => {
    const body = { model: MODEL, prompt: PROMPT, max_tokens: 40, temperature: 0, n: 2, include_token_sources: true, speculative: { drafter: 'prompt-lookup' } };
    const { status, body: res } = await post('/v1/completions', body);
    assert.equal(status, 200);
    for (const choice of res.choices) {
      const sources: Source[] = choice.token_sources;
      assert.equal(sources.map((s) => s.text).join(''), choice.text);
      for (const s of sources) {
        // a step's accepted drafts come first, then the target's own token
        if (s.source === 'draft') assert.ok(s.position < s.drafted);
        else assert.equal(s.position, draftedTokens(sources.filter((o) => o.step === s.step)));
        assert.ok(s.drafted <= s.draft_cap, `drafted ${s.drafted} over the cap ${s.draft_cap}`);
      }
      const stats = res.speculative.find((st: { index: number }) => st.index === choice.index);
      assert.ok(stats.accepted_tokens > 0, 'the prompt should make prompt lookup land drafts');
      assert.equal(draftedTokens(sources), stats.accepted_tokens);
    }
    // without the flag the response is what it always was
    const plain = await post('/v1/completions', { ...body, include_token_sources: undefined });
    assert.equal(plain.body.choices[0].token_sources, undefined);
    assert.equal(plain.body.choices[0].text, res.choices[0].text);
  });

  test('streaming with n = 2 and a stop string: every chunk\'s sources add up to its text', async () => {
    const body = { model: MODEL, prompt: PROMPT, max_tokens: 40, temperature: 0, n: 2, stop: ['interface'], speculative: { drafter: 'prompt-lookup' } };
    const whole = await post('/v1/completions', body);
    const events = await stream('/v1/completions', { ...body, stream_options: { include_token_sources: true } });
    const texts = ['', ''];
    let drafts = 0;
    for (const { data } of events) {
      for (const choice of data.choices) {
        if (choice.finish_reason) continue;
        const sources: Source[] = choice.token_sources;
        assert.ok(Array.isArray(sources), 'a text chunk without token_sources');
        assert.equal(sources.map((s) => s.text).join(''), choice.text);
        drafts += draftedTokens(sources);
        texts[choice.index] += choice.text;
      }
    }
    assert.deepEqual(texts, whole.body.choices.map((c: { text: string }) => c.text));
    assert.ok(!texts[0].includes('interface'));
    assert.ok(drafts > 0, 'no drafted token reached the stream');
  });

  test('chat: absent unless asked for; with logprobs each source carries its token\'s', async () => {
    const body = { model: MODEL, messages: [{ role: 'user', content: PROMPT }], max_tokens: 24, temperature: 0, speculative: { drafter: 'prompt-lookup' } };
    const plain = await stream('/v1/chat/completions', body);
    for (const { data } of plain) for (const choice of data.choices) assert.equal('token_sources' in choice, false);
    const rich = await stream('/v1/chat/completions', { ...body, logprobs: true, stream_options: { include_token_sources: true } });
    const content = (events: { data: any }[]) => events.map(({ data }) => data.choices[0]?.delta?.content ?? '').join('');
    assert.equal(content(rich), content(plain));
    for (const { data } of rich) {
      const choice = data.choices[0];
      if (!choice?.delta?.content) continue;
      assert.equal(choice.token_sources.map((s: Source) => s.text).join(''), choice.delta.content);
      for (const s of choice.token_sources as Source[]) assert.equal(typeof s.logprob, 'number');
    }
  });

  test('the official openai client passes the option through and hands the sources back', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 24,
      temperature: 0,
      stream: true,
      // this project's extensions: the SDK sends fields it does not know as they are
      stream_options: { include_token_sources: true, pacing: 'smooth' } as OpenAI.ChatCompletionStreamOptions,
      speculative: { drafter: 'prompt-lookup' },
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    let content = '';
    let sourced = '';
    for await (const chunk of stream) {
      const choice = chunk.choices[0] as (typeof chunk.choices)[number] & { token_sources?: Source[] };
      content += choice?.delta?.content ?? '';
      sourced += (choice?.token_sources ?? []).map((s) => s.text).join('');
    }
    assert.ok(content.length > 0);
    assert.equal(sourced, content);
  });

  test('echo cannot be combined with token sources', async () => {
    const { status, body } = await post('/v1/completions', { model: MODEL, prompt: 'x', max_tokens: 2, echo: true, include_token_sources: true });
    assert.equal(status, 400);
    assert.equal(body.error.param, 'include_token_sources');
  });
});

describe('pacing', () => {
  // The cadence itself is tested in test/server/pacing.test.ts with steps of known timing: this
  // model's steps take about half a millisecond, less than a timer's resolution.
  test('smooth pacing sends the same text, with n = 2 and token sources; a bad value names the field', async () => {
    const body = { model: MODEL, prompt: PROMPT, max_tokens: 64, temperature: 0, n: 2, speculative: { drafter: 'prompt-lookup' } };
    const texts = (events: { data: any }[]) => {
      const out = ['', ''];
      for (const { data } of events) for (const c of data.choices) out[c.index] += c.text ?? '';
      return out;
    };
    const off = await stream('/v1/completions', body);
    const smooth = await stream('/v1/completions', { ...body, stream_options: { pacing: 'smooth', include_token_sources: true } });
    assert.deepEqual(texts(smooth), texts(off));
    for (const { data } of smooth) {
      for (const c of data.choices) if (c.text) assert.equal(c.token_sources.map((s: Source) => s.text).join(''), c.text);
    }
    const bad = await post('/v1/completions', { ...body, stream: true, stream_options: { pacing: 'fast' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.param, 'stream_options.pacing');
  });
});
