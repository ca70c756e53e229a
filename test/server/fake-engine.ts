// A stand-in Engine for testing the HTTP layer only: bytes are tokens, the output is a fixed
// text (rotated by the seed), and it honours maxTokens, EOS, echo, logprobs and the abort signal.
// Failures are injected through options so each error path can be driven on purpose.

import { setTimeout as sleep } from 'node:timers/promises';
import type { ChatMessage, DecodeTiming, DrafterInfo, Engine, EngineInfo, SpeculationStats, TextEvent, TextRequest, TokenLogprob } from '../../src/engine/types.ts';
import { ApiError } from '../../src/errors.ts';

export const FAKE_MODEL_ID = 'fake-model';
export const FAKE_OUTPUT = 'the quick brown fox jumps over the lazy dog ';
/** Every token's log-probability; top alternatives step down from it. */
export const FAKE_LOGPROB = -0.25;

export interface FakeEngineOptions {
  info?: Partial<EngineInfo>;
  /** Tokens before the fake EOS (finish_reason "stop"). Defaults to 12. */
  eosAfter?: number;
  /** Delay before each generated token, in ms. Defaults to 0. */
  tokenDelayMs?: number;
  /** Thrown when generation starts, before any event. */
  failAtStart?: Error;
  /** Thrown after this many generated tokens. */
  failAfter?: { tokens: number; error: Error };
  speculation?: SpeculationStats;
  /** The done event's decode timing. */
  timing?: DecodeTiming;
  drafters?: DrafterInfo[];
  /** On abort: throw the signal's reason (default) or just end without a done event. */
  onAbort?: 'throw' | 'end';
}

export class FakeEngine implements Engine {
  readonly info: EngineInfo;
  /** Every TextRequest received, in order. */
  readonly requests: TextRequest[] = [];
  /** Generations that stopped because their signal aborted. */
  abortedGenerations = 0;
  running = 0;
  closed = false;
  readonly #options: FakeEngineOptions;

  constructor(options: FakeEngineOptions = {}) {
    this.#options = options;
    this.info = {
      modelId: FAKE_MODEL_ID,
      contextLength: 256,
      provider: 'cpu',
      dtype: 'fp32',
      layout: 'speculative',
      vocabSize: 256,
      defaultDrafter: 'none',
      ...options.info,
    };
  }

  tokenize(text: string): number[] {
    return [...Buffer.from(text, 'utf8')];
  }

  detokenize(ids: number[]): string {
    return Buffer.from(ids).toString('utf8');
  }

  applyChatTemplate(messages: ChatMessage[]): string {
    return `${messages.map((m) => `<${m.role}>${m.content}`).join('')}<assistant>`;
  }

  drafters(): DrafterInfo[] {
    return (
      this.#options.drafters ?? [
        { name: 'hydra', available: true, description: 'fake hydra' },
        { name: 'medusa', available: false, reason: 'no heads in this model', description: 'fake medusa' },
      ]
    );
  }

  load() {
    return { running: this.running, waiting: 0 };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  generateText(req: TextRequest): AsyncIterable<TextEvent> {
    this.requests.push(req);
    return this.#generate(req);
  }

  async *#generate(req: TextRequest): AsyncGenerator<TextEvent> {
    const options = this.#options;
    this.running++;
    try {
      await sleep(0);
      if (options.failAtStart) throw options.failAtStart;
      const promptIds = typeof req.prompt === 'string' ? this.tokenize(req.prompt) : req.prompt;
      // Same rule as the real engine: the prompt and the whole max_tokens budget must fit.
      if (promptIds.length >= this.info.contextLength || promptIds.length + req.maxTokens > this.info.contextLength) {
        throw new ApiError(
          'context_length_exceeded',
          `This model's maximum context length is ${this.info.contextLength} tokens, but the prompt has ${promptIds.length} tokens`,
          promptIds.length >= this.info.contextLength ? 'prompt' : 'max_tokens',
        );
      }
      let offset = 0;
      if (req.echo) {
        const text = this.detokenize(promptIds);
        yield { type: 'text', text, tokenIds: promptIds, ...(req.logprobs === null ? {} : { logprobs: this.#logprobs(promptIds, req.logprobs, 0, true) }) };
        offset = text.length;
      }
      const eosAfter = req.ignoreEos ? Infinity : Math.max(options.eosAfter ?? 12, req.minTokens);
      const start = req.sampling.temperature === 0 ? 0 : (req.sampling.seed ?? 0) % FAKE_OUTPUT.length;
      let generated = 0;
      while (generated < req.maxTokens && generated < eosAfter) {
        if (options.tokenDelayMs) await sleep(options.tokenDelayMs);
        if (req.signal?.aborted) {
          this.abortedGenerations++;
          if (options.onAbort === 'end') return;
          throw req.signal.reason ?? new Error('aborted');
        }
        if (options.failAfter && generated === options.failAfter.tokens) throw options.failAfter.error;
        const text = FAKE_OUTPUT[(start + generated) % FAKE_OUTPUT.length];
        const ids = this.tokenize(text);
        yield { type: 'text', text, tokenIds: ids, ...(req.logprobs === null ? {} : { logprobs: this.#logprobs(ids, req.logprobs, offset, false) }) };
        offset += text.length;
        generated++;
      }
      yield {
        type: 'done',
        finishReason: generated < req.maxTokens ? 'stop' : 'length',
        promptTokens: promptIds.length,
        completionTokens: generated,
        ...(options.speculation ? { speculation: options.speculation } : {}),
        ...(options.timing ? { timing: options.timing } : {}),
      };
    } finally {
      this.running--;
    }
  }

  #logprobs(ids: number[], top: number, offset: number, isPrompt: boolean): TokenLogprob[] {
    return ids.map((id, i) => {
      const token = this.detokenize([id]);
      const first = isPrompt && i === 0;
      return {
        token,
        tokenId: id,
        logprob: first ? null : FAKE_LOGPROB,
        top: first ? [] : Array.from({ length: top }, (_, k) => ({ token: k === 0 ? token : `alt${k}`, logprob: FAKE_LOGPROB - k })),
        textOffset: offset + i,
      };
    });
  }
}
