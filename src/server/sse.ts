// Server-sent events on a hijacked fastify reply: `data: <json>\n\n` events, `data: [DONE]` at the
// end, `: ping` comments so idle proxies keep the connection. Writes wait for 'drain' so a slow
// client slows its own generation down instead of growing a buffer without bound.

import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { ApiError } from '../errors.ts';

/** Keep-alive comment interval. */
export const SSE_PING_INTERVAL_MS = 15_000;

export class SseStream {
  readonly #reply: FastifyReply;
  readonly #res: ServerResponse;
  #ping: NodeJS.Timeout | undefined;

  constructor(reply: FastifyReply) {
    this.#reply = reply;
    this.#res = reply.raw;
  }

  /** Takes the response over from fastify and sends the 200 with SSE headers. */
  open(requestId: string, pingIntervalMs = SSE_PING_INTERVAL_MS): void {
    this.#reply.hijack();
    this.#res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // nginx buffers proxied responses unless told not to.
      'x-accel-buffering': 'no',
      'x-request-id': requestId,
    });
    this.#res.flushHeaders();
    this.#ping = setInterval(() => {
      if (!this.closed) this.#res.write(': ping\n\n');
    }, pingIntervalMs);
    this.#ping.unref();
    this.#res.once('close', () => clearInterval(this.#ping));
  }

  /** True once the stream ended or the client went away; further writes are dropped. */
  get closed(): boolean {
    return this.#res.writableEnded || this.#res.destroyed;
  }

  async send(data: unknown): Promise<void> {
    if (this.closed) return;
    // events written in the same turn of the event loop (one worker message can carry several
    // steps) leave in one socket write
    if (!this.#res.writableCorked) {
      this.#res.cork();
      setImmediate(() => this.#res.uncork());
    }
    if (!this.#res.write(`data: ${JSON.stringify(data)}\n\n`)) await drained(this.#res);
  }

  /** An error after the 200 went out can only travel as an event. */
  async sendError(error: ApiError): Promise<void> {
    await this.send(error.toJSON());
  }

  end(): void {
    clearInterval(this.#ping);
    if (this.closed) return;
    this.#res.end('data: [DONE]\n\n');
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
