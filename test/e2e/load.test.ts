// Under load, with the real server process: continuous batching keeps outputs exact, disconnects
// free everything, a flood gets 429s, SIGTERM drains.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createParser } from 'eventsource-parser';
import { PROMPTS } from '../../bench/prompts.ts';
import { metric, startServer } from '../helpers/server.ts';

const MODEL = 'specserve-tiny';
const prompts = Object.values(PROMPTS).flat();

async function stream(url: string, body: Record<string, unknown>, opts: { abortAfterChunks?: number; onFirstChunk?: () => void } = {}) {
  const ctl = new AbortController();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, stream: true, ...body }),
    signal: ctl.signal,
  });
  if (res.status !== 200) return { status: res.status, text: '', finish: null as string | null, retryAfter: res.headers.get('retry-after'), body: await res.json() };
  let text = '';
  let finish: string | null = null;
  let chunks = 0;
  let done = false;
  const parser = createParser({
    onEvent(ev) {
      if (ev.data === '[DONE]') {
        done = true;
        return;
      }
      const c = JSON.parse(ev.data);
      if (c.error) throw new Error(c.error.message);
      text += c.choices[0]?.text ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
      if (chunks++ === 0) opts.onFirstChunk?.();
    },
  });
  const dec = new TextDecoder();
  try {
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      parser.feed(dec.decode(part, { stream: true }));
      if (opts.abortAfterChunks !== undefined && chunks >= opts.abortAfterChunks) {
        ctl.abort();
        break;
      }
    }
  } catch (err) {
    if (!ctl.signal.aborted) throw err;
  }
  return { status: 200, text, finish, done, retryAfter: null, body: null };
}

async function settle(url: string, name: string, want: number, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let v = await metric(url, name);
  while (v !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    v = await metric(url, name);
  }
  return v;
}

test('32 concurrent streams get exactly what each request gets alone; disconnects leak nothing', async () => {
  const server = await startServer(['--max-batch-size', '32']);
  try {
    const reqs = Array.from({ length: 32 }, (_, i) => ({
      prompt: prompts[i % prompts.length],
      max_tokens: 24 + (i % 3) * 8,
      temperature: 0,
      speculative: { drafter: i % 2 ? 'prompt-lookup' : 'none' },
    }));
    const alone: string[] = [];
    for (const r of reqs.slice(0, 8)) alone.push((await stream(server.url, r)).text);
    const together = await Promise.all(reqs.map((r) => stream(server.url, r)));
    together.forEach((t, i) => {
      assert.equal(t.status, 200);
      assert.ok(t.finish === 'length' || t.finish === 'stop', `request ${i} did not finish`);
      if (i < 8) assert.equal(t.text, alone[i], `request ${i} differs when batched`);
    });
    // half of 16 new streams disconnect after a few chunks
    const mixed = await Promise.all(
      Array.from({ length: 16 }, (_, i) => stream(server.url, { prompt: prompts[i % prompts.length], max_tokens: 200, ignore_eos: true, temperature: 0 }, i % 2 ? { abortAfterChunks: 3 } : {})),
    );
    mixed.forEach((m, i) => {
      if (i % 2 === 0) assert.equal(m.finish, 'length');
    });
    assert.equal(await settle(server.url, 'specserve_kv_cache_sequences', 0), 0, 'sequences leaked');
    assert.equal(await settle(server.url, 'specserve_kv_cache_tokens', 0), 0, 'KV tokens leaked');
    assert.equal(await settle(server.url, 'specserve_requests_running', 0), 0);
    assert.equal(await metric(server.url, 'specserve_kv_cache_bytes', 'tier="fp32"'), 0, 'KV blocks leaked');
  } finally {
    await server.stop();
  }
});

test('a flood beyond the queue gets 429 with Retry-After while admitted requests complete', async () => {
  const server = await startServer(['--max-batch-size', '2', '--max-queued-requests', '2']);
  try {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => stream(server.url, { prompt: prompts[i % prompts.length], max_tokens: 64, ignore_eos: true, temperature: 0 })),
    );
    const ok = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    assert.ok(limited.length > 0, 'no request was refused');
    assert.ok(ok.length >= 2, 'admitted requests did not run');
    for (const r of ok) assert.equal(r.finish, 'length');
    for (const r of limited) {
      assert.equal(r.body.error.code, 'queue_full');
      assert.ok(Number(r.retryAfter) > 0);
    }
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
  } finally {
    await server.stop();
  }
});

test('SIGTERM during load drains in-flight streams and exits 0', async () => {
  const server = await startServer();
  try {
    const started: Promise<unknown>[] = [];
    const inflight = Array.from({ length: 4 }, (_, i) => {
      let onFirstChunk!: () => void;
      const first = new Promise<void>((resolve) => (onFirstChunk = resolve));
      const done = stream(server.url, { prompt: prompts[i], max_tokens: 200, ignore_eos: true, temperature: 0 }, { onFirstChunk });
      // a stream that ends (or fails) before its first chunk fails the wait instead of hanging it
      started.push(Promise.race([first, done.then((r) => Promise.reject(new Error(`stream ${i} ended before its first chunk: ${r.status} ${JSON.stringify(r.body)}`)))]));
      return done;
    });
    // every stream is decoding (and has far from finished) before the signal, however slow the
    // machine: no fixed delay, but a bound so that a stuck server fails rather than hangs
    await within(60_000, Promise.all(started), 'all four streams to start');
    server.child.kill('SIGTERM');
    const results = await Promise.all(inflight);
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.finish, 'length', 'in-flight stream was cut');
    }
    assert.equal(await server.exited, 0);
  } finally {
    await server.stop(); // no-op once it has exited
  }
});

/** `p`, or a rejection naming `what` after `ms`. */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}`)), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
