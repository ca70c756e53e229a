import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import { ApiError } from '../../src/errors.ts';
import { SseStream } from '../../src/server/sse.ts';

test('SseStream: headers, data events, keep-alive pings, error event, [DONE]', async () => {
  const app = Fastify();
  app.get('/events', async (request, reply) => {
    const sse = new SseStream(reply);
    let pings = 0;
    const write = reply.raw.write.bind(reply.raw);
    reply.raw.write = ((chunk: unknown, ...rest: never[]) => {
      if (String(chunk).includes(': ping')) pings++;
      return write(chunk as string, ...rest);
    }) as typeof reply.raw.write;
    sse.open(String(request.id), 20);
    await sse.send({ n: 1 });
    // wait for two pings (a loaded machine may delay timers), for at most 5 s
    for (let i = 0; i < 250 && pings < 2; i++) await sleep(20);
    await sse.sendError(new ApiError('engine_failed', 'gone'));
    sse.end();
    assert.equal(sse.closed, true);
    await sse.send({ n: 2 }); // dropped, not thrown
    return reply;
  });
  const res = await app.inject({ method: 'GET', url: '/events' });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
  assert.equal(res.headers['cache-control'], 'no-cache');
  assert.equal(res.headers.connection, 'keep-alive');
  assert.equal(res.headers['x-accel-buffering'], 'no');
  assert.ok(res.body.startsWith('data: {"n":1}\n\n'));
  assert.ok(res.body.split(': ping\n\n').length >= 3, res.body);
  assert.ok(
    res.body.endsWith(
      'data: {"error":{"message":"gone","type":"server_error","param":null,"code":"engine_failed"}}\n\ndata: [DONE]\n\n',
    ),
  );
  assert.doesNotMatch(res.body, /"n":2/);
});
