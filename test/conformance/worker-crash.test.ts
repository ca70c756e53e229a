// A dead inference worker fails the requests it was running with a clear error (never a hang) and
// is replaced; the next requests are served normally.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { ApiError } from '../../src/errors.ts';
import { generate, PROMPTS, request, startEngine } from '../helpers/engine.ts';

test('worker death: in-flight requests get an error, a fresh worker serves the next ones', async () => {
  const engine = await startEngine();
  try {
    const before = await generate(engine, request(PROMPTS.code[0], { maxTokens: 16 }));
    const inflight = engine.generateText(request(PROMPTS.code[1], { maxTokens: 900, ignoreEos: true }))[Symbol.asyncIterator]();
    // the request is decoding once its first text arrives
    assert.equal((await inflight.next()).value?.type, 'text');
    // A message the worker does not know is a protocol bug, and the worker dies of it, as of any
    // other bug. (Worker.terminate() during a native onnxruntime run aborts the whole process.)
    (engine as unknown as { worker: Worker }).worker.postMessage({ type: 'not-a-message' });
    const drain = async () => {
      for (let r = await inflight.next(); !r.done; r = await inflight.next());
    };
    await assert.rejects(drain(), (err: unknown) => err instanceof ApiError && err.code === 'internal_error' && /worker died/.test(err.message));
    // the replacement loads in the background; requests work again once it is up
    let after;
    for (let i = 0; i < 100 && !after; i++) {
      try {
        after = await generate(engine, request(PROMPTS.code[0], { maxTokens: 16 }));
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(after, 'no request succeeded after the restart');
    assert.deepEqual(after.tokenIds, before.tokenIds);
  } finally {
    await engine.close();
  }
});
