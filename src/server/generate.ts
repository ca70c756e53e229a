// Runs the choices of one request against the engine, concurrently, either collected into one
// response or streamed as SSE. Both endpoints share this; they differ only in chunk/response shape.

import type { FastifyReply } from 'fastify';
import type { Engine, TextEvent, TokenLogprob, TokenSource } from '../engine/types.ts';
import { ApiError } from '../errors.ts';
import type { ServerContext } from './context.ts';
import { eventSources, usageOf, type DoneEvent, type TextChunk } from './format.ts';
import type { ChoiceTimer, GenerationTimer } from './metrics.ts';
import type { Usage } from './schemas.ts';
import { paceSmoothly, type StreamPacing } from './pacing.ts';
import { SseStream } from './sse.ts';
import type { Choice } from './text-request.ts';

export interface ChoiceOutput {
  index: number;
  promptIndex: number;
  text: string;
  logprobs: TokenLogprob[];
  /** Where the text came from, stretch by stretch (`text` is their concatenation). */
  sources: TokenSource[];
  done: DoneEvent;
}

/**
 * One AbortController for every engine call of a request. It fires when the client goes away
 * before the response finished, when shutdown runs out of time, or when a sibling choice fails.
 */
export class RequestAbort {
  readonly controller = new AbortController();
  #clientGone = false;
  readonly #ctx: ServerContext;
  readonly #reply: FastifyReply;

  constructor(ctx: ServerContext, reply: FastifyReply) {
    this.#ctx = ctx;
    this.#reply = reply;
    ctx.inFlight.add(this.controller);
    reply.raw.once('close', this.#onClose);
  }

  readonly #onClose = () => {
    // Ended by us (the response is complete) is not a disconnect.
    if (this.#reply.raw.writableEnded) return;
    this.#clientGone = true;
    this.controller.abort(new Error('client disconnected'));
  };

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get clientGone(): boolean {
    return this.#clientGone;
  }

  /**
   * The error to report. A shutdown abort carries an ApiError reason, and whatever the engine does
   * when aborted (rethrow, its own error, end without a done event) is a consequence of it.
   */
  reasonFor(error: unknown): unknown {
    const reason: unknown = this.signal.reason;
    return this.signal.aborted && reason instanceof ApiError ? reason : error;
  }

  release(): void {
    this.#ctx.inFlight.delete(this.controller);
    this.#reply.raw.off('close', this.#onClose);
  }
}

/** One choice's engine iterator, feeding metrics as events arrive and accumulating the result. */
class ChoiceRun {
  readonly choice: Choice;
  text = '';
  readonly logprobs: TokenLogprob[] = [];
  readonly sources: TokenSource[] = [];
  done: DoneEvent | undefined;
  readonly #iterator: AsyncIterator<TextEvent>;
  readonly #timer: ChoiceTimer;
  readonly #countPrompt: (run: ChoiceRun) => void;
  #echoPending: boolean;

  constructor(engine: Engine, choice: Choice, timer: GenerationTimer, countPrompt: (run: ChoiceRun) => void) {
    this.choice = choice;
    this.#iterator = engine.generateText(choice.request)[Symbol.asyncIterator]();
    this.#timer = timer.choice();
    this.#countPrompt = countPrompt;
    this.#echoPending = choice.request.echo;
  }

  async next(): Promise<TextEvent | undefined> {
    const result = await this.#iterator.next();
    if (result.done) {
      if (!this.done) throw new ApiError('engine_failed', 'The engine ended a generation without a done event');
      return undefined;
    }
    const event = result.value;
    if (event.type === 'text') {
      // An echoed prompt is not generated text: it must not count as the first token.
      if (this.#echoPending) this.#echoPending = false;
      else this.#timer.text(event);
      this.text += event.text;
      if (event.logprobs) this.logprobs.push(...event.logprobs);
      this.sources.push(...eventSources(event));
    } else {
      this.done = event;
      this.#timer.done(event);
      this.#countPrompt(this);
    }
    return event;
  }

  /** Stops pulling; lets the engine's generator run its cleanup. Not awaited: cleanup is the engine's business. */
  stop(): void {
    this.#iterator.return?.().catch(() => undefined);
  }

  output(): ChoiceOutput {
    if (!this.done) throw new ApiError('engine_failed', 'The engine ended a generation without a done event');
    return { index: this.choice.index, promptIndex: this.choice.promptIndex, text: this.text, logprobs: this.logprobs, sources: this.sources, done: this.done };
  }
}

function startRuns(engine: Engine, choices: readonly Choice[], timer: GenerationTimer): ChoiceRun[] {
  const promptsCounted = new Set<number>();
  const countPrompt = (run: ChoiceRun) => {
    if (promptsCounted.has(run.choice.promptIndex) || !run.done) return;
    promptsCounted.add(run.choice.promptIndex);
    timer.prompt(run.done.promptTokens);
  };
  return choices.map((choice) => new ChoiceRun(engine, choice, timer, countPrompt));
}

/** Non-streaming: every choice to its end. The first failure aborts the rest and is rethrown. */
export async function collectChoices(
  engine: Engine,
  choices: readonly Choice[],
  abort: RequestAbort,
  timer: GenerationTimer,
): Promise<ChoiceOutput[]> {
  const runs = startRuns(engine, choices, timer);
  try {
    return await Promise.all(
      runs.map(async (run) => {
        while ((await run.next()) !== undefined);
        return run.output();
      }),
    );
  } catch (error) {
    abort.controller.abort();
    for (const run of runs) run.stop();
    throw abort.reasonFor(error);
  }
}

/** How an endpoint shapes its stream; `undefined` means "send nothing for this". */
export interface StreamFormat {
  /** Sent for every choice right after the headers (chat: the `role` delta). */
  opening(index: number): unknown;
  text(index: number, event: TextChunk): unknown;
  finish(index: number, done: DoneEvent): unknown;
  usage(usage: Usage): unknown;
}

/**
 * Streaming. Headers go out only once every choice produced its first event, so request-level
 * engine errors (prompt too long, queue full, unknown drafter) still get a real HTTP status;
 * such an error is thrown from here before the reply is hijacked. Afterwards errors become an
 * SSE error event followed by [DONE].
 */
export async function streamChoices(args: {
  engine: Engine;
  choices: readonly Choice[];
  abort: RequestAbort;
  timer: GenerationTimer;
  reply: FastifyReply;
  format: StreamFormat;
  includeUsage: boolean;
  pacing: StreamPacing;
}): Promise<void> {
  const { abort, format } = args;
  const runs = startRuns(args.engine, args.choices, args.timer);
  let firsts: (TextEvent | undefined)[];
  try {
    firsts = await Promise.all(runs.map((run) => run.next()));
  } catch (error) {
    abort.controller.abort();
    for (const run of runs) run.stop();
    throw abort.reasonFor(error);
  }

  const sse = new SseStream(args.reply);
  sse.open(String(args.reply.request.id));
  for (const run of runs) {
    const opening = format.opening(run.choice.index);
    if (opening !== undefined) await sse.send(opening);
  }

  let failure: unknown;
  await Promise.all(
    runs.map(async (run, k) => {
      try {
        let pulled = false; // the first event was already pulled, before the headers went out
        const pull = async () => {
          if (pulled) return run.next();
          pulled = true;
          return firsts[k];
        };
        const events = args.pacing === 'smooth' ? paceSmoothly(pull) : unpaced(pull);
        for await (const event of events) {
          if (failure !== undefined || sse.closed) return run.stop();
          const chunk = event.type === 'text' ? format.text(run.choice.index, event) : format.finish(run.choice.index, event);
          if (chunk !== undefined) await sse.send(chunk);
        }
      } catch (error) {
        failure ??= error;
        abort.controller.abort();
      }
    }),
  );

  if (sse.closed) {
    // The client went away; the abort already reached the engine and there is no one to tell.
  } else if (failure !== undefined) {
    const reason = abort.reasonFor(failure);
    const apiError = reason instanceof ApiError ? reason : new ApiError('internal_error');
    if (apiError.status >= 500) args.reply.log.error({ err: failure }, `stream failed after headers were sent: ${apiError.code}`);
    await sse.sendError(apiError);
  } else if (args.includeUsage) {
    await sse.send(format.usage(usageOf(runs.map((run) => run.output()))));
  }
  sse.end();
}

async function* unpaced(next: () => Promise<TextEvent | undefined>): AsyncGenerator<TextEvent> {
  for (let event = await next(); event !== undefined; event = await next()) yield event;
}

/**
 * Runs a generation with a RequestAbort. When the client has gone, the engine's abort error is
 * nobody's business: the reply is hijacked (nothing left to send) and `undefined` returned.
 */
export async function withRequestAbort<T>(
  ctx: ServerContext,
  reply: FastifyReply,
  run: (abort: RequestAbort) => Promise<T>,
): Promise<T | undefined> {
  const abort = new RequestAbort(ctx, reply);
  try {
    return await run(abort);
  } catch (error) {
    if (!abort.clientGone) throw error;
    if (!reply.sent) reply.hijack();
    return undefined;
  } finally {
    abort.release();
  }
}
