// Admission: the waiting queue and the running batch. Requests wait in arrival order (FCFS) and are
// admitted while the batch has a place and the KV budget can hold their prompt plus one step of
// lookahead; every way a sequence leaves the batch goes through `finish` or `fail`.
import type { PagedKvCache } from '../kvcache/paged.ts';
import { doneMessage, type FinishReason } from './emit.ts';
import type { FromWorker } from './protocol.ts';
import type { Sequence } from './sequence.ts';

type ErrorCode = Extract<FromWorker, { type: 'error' }>['code'];

export interface BatchEnv {
  kv: PagedKvCache;
  maxBatchSize: number;
  maxQueuedRequests: number;
  send: (m: FromWorker) => void;
}

export class Batch {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];

  constructor(private readonly env: BatchEnv) {}

  /** Queues a sequence, or refuses it with a 429 when the queue is full. */
  enqueue(s: Sequence): void {
    if (this.waiting.length >= this.env.maxQueuedRequests) {
      this.env.send({ type: 'error', id: s.id, code: 'queue_full', message: `queue is full (${this.env.maxQueuedRequests} waiting)` });
      return;
    }
    this.waiting.push(s);
  }

  /** The client went away: a waiting sequence leaves now, a running one at the next step (the
   *  current step may be using its rows). */
  cancel(id: number): void {
    for (const s of this.running) if (s.id === id) s.cancelled = true;
    const i = this.waiting.findIndex((s) => s.id === id);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  /** Drops cancelled sequences and fails those past their deadline. */
  reap(now: number): void {
    for (const s of [...this.running]) {
      if (s.cancelled) this.leave(s, true);
      else if (s.req.deadline && now > s.req.deadline) this.fail(s, 'request_timeout', 'request exceeded its deadline');
    }
  }

  admit(): void {
    while (this.waiting.length && this.running.length < this.env.maxBatchSize) {
      const s = this.waiting[0];
      // reserve room for the prompt and one step of lookahead (root + drafts): reserved blocks
      // count as used, so the next admission cannot count them as free too
      const need = s.req.promptIds.length + s.req.maxDraftTokens + 1;
      if (!this.env.kv.reserve(s.id, need)) {
        if (this.running.length === 0) {
          this.waiting.shift();
          this.env.send({ type: 'error', id: s.id, code: 'queue_full', message: 'request does not fit in the KV cache budget' });
          continue;
        }
        return; // wait for running sequences to free blocks
      }
      this.waiting.shift();
      this.running.push(s);
    }
  }

  /** Ends a sequence with its done message. */
  finish(s: Sequence, reason: FinishReason): void {
    const usage = this.leave(s, false);
    this.env.send(doneMessage(s, reason, usage?.peakBytes ?? 0));
  }

  /** Ends a sequence with an error. */
  fail(s: Sequence, code: ErrorCode, message: string): void {
    this.env.send({ type: 'error', id: s.id, code, message });
    this.leave(s, true);
  }

  /** Fails every request (the worker is shutting down or broken). */
  failAll(message: string): void {
    for (const s of [...this.running, ...this.waiting]) this.fail(s, 'internal_error', message);
    this.waiting.length = 0;
  }

  /** Takes a sequence out of the batch and frees what it held. `reportKv`: it ends without a done
   *  message (cancelled or failed), so its KV use is reported on its own. */
  private leave(s: Sequence, reportKv: boolean) {
    const i = this.running.indexOf(s);
    if (i >= 0) this.running.splice(i, 1);
    const usage = this.env.kv.release(s.id);
    s.drafter?.release(s.id);
    if (reportKv && usage) this.env.send({ type: 'released', id: s.id, kvPeakBytes: usage.peakBytes });
    return usage;
  }
}
