// The main-thread engine: tokenizes, talks to the inference worker, detokenizes, applies stop
// strings. Implements the `Engine` contract the server uses.
import { randomInt } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { ApiError, assertKnownDrafter } from '../errors.ts';
import type { KvStats } from '../kvcache/paged.ts';
import { loadModelConfig, type ModelConfig } from '../model/config.ts';
import { meanAcceptanceLength } from './stats.ts';
import { LANTERN_DELTA, LANTERN_K, type EngineOptions } from './options.ts';
import type { DraftCapSnapshot, FromWorker, SeqRequest, WireLogprob, WorkerInfo, WorkerInit } from '../worker/protocol.ts';
import { textEvent, TextCodec, TokenTextStream } from '../model/text.ts';
import type {
  ChatMessage, DrafterInfo, Engine, EngineInfo, EngineLoad, TextEvent, TextPart, TextRequest, TokenLogprob,
} from './types.ts';

export interface EngineHooks {
  log?: (level: 'info' | 'warn' | 'error', msg: string) => void;
  /** Called for every verified draft step (metrics). */
  onSpecStep?: (m: Extract<FromWorker, { type: 'spec_step' }>) => void;
  onLoad?: (running: number, waiting: number, kv: KvStats, draftCaps?: DraftCapSnapshot[]) => void;
  /** A request asked for a drafter (or policy) that could not run; it decoded plainly. */
  onFallback?: (drafter: string, reason: string) => void;
  /** A request finished: the most KV cache bytes it held at once. */
  onRequestKv?: (peakBytes: number) => void;
}

/** Per-request channel from worker messages to the async iterator. */
class Channel {
  private queue: FromWorker[] = [];
  private waiter: (() => void) | null = null;
  push(m: FromWorker) {
    this.queue.push(m);
    this.waiter?.();
  }
  /** Puts messages back at the front, in order. */
  unshift(ms: FromWorker[]) {
    this.queue.unshift(...ms);
  }
  async next(): Promise<FromWorker> {
    while (this.queue.length === 0) await new Promise<void>((r) => (this.waiter = r));
    this.waiter = null;
    return this.queue.shift()!;
  }
}

export class LocalEngine implements Engine {
  readonly info: EngineInfo;
  private worker!: Worker;
  private workerInfo!: WorkerInfo;
  private readonly channels = new Map<number, Channel>();
  private nextId = 1;
  private loadState: EngineLoad = { running: 0, waiting: 0 };
  private closing = false;
  /** Between a worker's death and its replacement being ready. */
  private restarting = false;

  private constructor(
    readonly cfg: ModelConfig,
    private readonly codec: TextCodec,
    private readonly opts: EngineOptions,
    private readonly hooks: EngineHooks,
  ) {
    this.info = {
      modelId: cfg.id,
      contextLength: cfg.contextLength,
      provider: 'cpu',
      dtype: 'fp32',
      layout: cfg.layout,
      vocabSize: cfg.vocabSize,
      defaultDrafter: opts.defaultDrafter,
    };
  }

  static async create(opts: EngineOptions, hooks: EngineHooks = {}): Promise<LocalEngine> {
    const cfg = loadModelConfig(opts.modelDir, opts.modelId);
    const engine = new LocalEngine(cfg, new TextCodec(cfg.dir), opts, hooks);
    await engine.startWorker();
    const known = engine.workerInfo.drafters.map((d) => d.name);
    if (opts.defaultDrafter !== 'none' && !known.includes(opts.defaultDrafter)) {
      await engine.close();
      throw new Error(`default drafter "${opts.defaultDrafter}" is not one of: none, ${known.join(', ')}`);
    }
    return engine;
  }

  private startWorker(): Promise<void> {
    const init: WorkerInit = {
      modelDir: this.cfg.dir,
      provider: this.opts.provider,
      dtype: this.opts.dtype,
      threads: this.opts.threads,
      spinThreads: this.opts.spinThreads,
      maxBatchSize: this.opts.maxBatchSize,
      maxQueuedRequests: this.opts.maxQueuedRequests,
      kvCacheBytes: this.opts.kvCacheBytes,
      kvCache: this.opts.kvCache,
      prefillChunk: this.opts.prefillChunk,
      draftPolicy: this.opts.draftPolicy,
      kangarooThreshold: this.opts.kangarooThreshold,
    };
    const worker = new Worker(new URL('../worker/worker-entry.mjs', import.meta.url), { workerData: init });
    this.worker = worker;
    return new Promise((resolve, reject) => {
      let ready = false;
      const onMessage = (m: FromWorker): void => {
        switch (m.type) {
          case 'batch':
            for (const x of m.messages) onMessage(x);
            return;
          case 'ready':
            ready = true;
            this.restarting = false;
            this.workerInfo = m.info;
            (this.info as { provider: string }).provider = m.info.provider;
            (this.info as { dtype: string }).dtype = m.info.dtype;
            (this.info as { layout: string }).layout = m.info.layout;
            resolve();
            return;
          case 'fatal':
            this.hooks.log?.('error', `inference worker failed: ${m.message}`);
            if (!ready) reject(new Error(m.message));
            return;
          case 'log':
            this.hooks.log?.(m.level, m.message);
            return;
          case 'load':
            this.loadState = { running: m.running, waiting: m.waiting };
            this.hooks.onLoad?.(m.running, m.waiting, m.kv, m.draftCaps);
            return;
          case 'spec_step':
            this.hooks.onSpecStep?.(m);
            return;
          case 'released':
            this.hooks.onRequestKv?.(m.kvPeakBytes);
            return;
          default:
            this.channels.get(m.id)?.push(m);
        }
      };
      worker.on('message', onMessage);
      worker.on('error', (err) => {
        this.hooks.log?.('error', `inference worker error: ${err.stack ?? err.message}`);
        if (!ready) reject(err);
      });
      worker.on('exit', (code) => {
        if (!ready) return reject(new Error(`inference worker exited with code ${code} while loading`));
        if (this.closing) return;
        // every in-flight request gets a clear error instead of hanging; then a fresh worker
        this.hooks.log?.('error', `inference worker exited (code ${code}); restarting`);
        this.restarting = true;
        for (const [id, ch] of this.channels) ch.push({ type: 'error', id, code: 'internal_error', message: 'inference worker died' });
        this.channels.clear();
        this.startWorker().catch((err) => this.hooks.log?.('error', `worker restart failed: ${err.message}`));
      });
    });
  }

  tokenize(text: string): number[] {
    return this.codec.encode(text);
  }

  detokenize(ids: number[]): string {
    return this.codec.decode(ids);
  }

  applyChatTemplate(messages: ChatMessage[]): string {
    return this.codec.applyChatTemplate(messages);
  }

  drafters(): DrafterInfo[] {
    return this.workerInfo.drafters;
  }

  load(): EngineLoad {
    return this.loadState;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.worker.postMessage({ type: 'shutdown' });
    const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
    const timer = setTimeout(() => void this.worker.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }

  private resolveDrafter(req: TextRequest): { drafter: string; maxDraftTokens: number } {
    const drafter = req.speculative?.drafter ?? this.opts.defaultDrafter;
    assertKnownDrafter(drafter, this.workerInfo.drafters);
    return { drafter, maxDraftTokens: req.speculative?.maxDraftTokens ?? this.opts.maxDraftTokens };
  }

  async *generateText(req: TextRequest): AsyncIterable<TextEvent> {
    if (this.closing) throw new ApiError('shutting_down');
    if (this.restarting) throw new ApiError('model_loading', 'The inference worker is restarting; retry shortly', null, 1);
    const promptIds = typeof req.prompt === 'string' ? this.codec.encode(req.prompt) : req.prompt;
    const ctx = this.cfg.contextLength;
    if (promptIds.length === 0) throw new ApiError('invalid_request', 'prompt must not be empty', 'prompt');
    for (const id of promptIds) {
      if (!Number.isInteger(id) || id < 0 || id >= this.cfg.vocabSize) {
        throw new ApiError('invalid_request', `token id ${id} is outside the vocabulary [0, ${this.cfg.vocabSize})`, 'prompt');
      }
    }
    if (promptIds.length >= ctx || promptIds.length + req.maxTokens > ctx) {
      throw new ApiError(
        'context_length_exceeded',
        `This model's maximum context length is ${ctx} tokens. However, you requested ${promptIds.length + req.maxTokens} tokens ` +
          `(${promptIds.length} in the prompt, ${req.maxTokens} for the completion). Please reduce the prompt or max_tokens.`,
        promptIds.length >= ctx ? 'prompt' : 'max_tokens',
      );
    }
    const { drafter, maxDraftTokens } = this.resolveDrafter(req);
    const id = this.nextId++;
    const wire: SeqRequest = {
      id,
      promptIds,
      maxTokens: req.maxTokens,
      minTokens: req.minTokens,
      ignoreEos: req.ignoreEos,
      stop: req.stop,
      sampling: { ...req.sampling, seed: req.sampling.seed ?? randomInt(0, 2 ** 31) },
      logprobs: req.logprobs,
      promptLogprobs: req.echo && req.logprobs !== null,
      drafter,
      maxDraftTokens,
      acceptance: req.speculative?.acceptance ?? 'lossless',
      lanternK: req.speculative?.lanternK ?? LANTERN_K,
      lanternDelta: req.speculative?.lanternDelta ?? LANTERN_DELTA,
      deadline: this.opts.requestTimeoutMs ? Date.now() + this.opts.requestTimeoutMs : 0,
    };
    const ch = new Channel();
    this.channels.set(id, ch);
    const onAbort = () => this.worker.postMessage({ type: 'cancel', id });
    req.signal?.addEventListener('abort', onAbort, { once: true });
    let finished = false;
    try {
      if (req.signal?.aborted) return;
      this.worker.postMessage({ type: 'submit', req: wire });
      const stream = new TokenTextStream(this.codec, promptIds, req.stop);
      let offset = 0;
      if (req.echo) {
        const promptText = typeof req.prompt === 'string' ? req.prompt : this.codec.decode(promptIds);
        let lps: TokenLogprob[] | undefined;
        if (wire.promptLogprobs) {
          const m = await this.collectPromptLogprobs(ch, promptIds.length);
          lps = this.toTokenLogprobs(m, 0);
        }
        offset = promptText.length;
        yield { type: 'text', text: promptText, tokenIds: promptIds, logprobs: lps };
      }
      for (;;) {
        const m = await ch.next();
        if (m.type === 'error') throw workerError(m);
        if (m.type === 'prompt_logprobs') continue;
        if (m.type === 'tokens') {
          const parts: TextPart[] = [];
          const { step, drafted, accepted, cap } = m.origin;
          for (let i = 0; i < m.ids.length && !stream.stopped; i++) {
            const tokenId = m.ids[i];
            const wireLp = m.logprobs?.[i];
            const source = i < accepted ? 'draft' : 'target';
            const { text, sources } = stream.push(tokenId, { source, step, position: i, drafted, cap, tokenId, logprob: wireLp?.logprob ?? undefined });
            const logprob = wireLp && this.toTokenLogprobs([wireLp], offset)[0];
            offset += text.length;
            parts.push({ text, tokenId, logprob, sources });
          }
          // A token that completes no character (one byte of a UTF-8 sequence) still yields its id.
          const event = textEvent(parts, m.logprobs !== undefined);
          if (event.text || event.tokenIds.length) yield event;
          // a completed stop string ends the sequence in the worker too: its done message follows
          continue;
        }
        if (m.type === 'done') {
          const tail = stream.flush(); // empty after a stop string
          if (tail.text) yield { type: 'text', text: tail.text, tokenIds: [], parts: [tail] };
          finished = true;
          this.hooks.onRequestKv?.(m.kvPeakBytes);
          const spec = m.spec;
          if (spec?.fallback) {
            this.hooks.log?.('warn', `request ${id}: ${spec.fallback}`);
            this.hooks.onFallback?.(spec.drafter, spec.fallback);
          }
          yield {
            type: 'done',
            finishReason: m.finishReason,
            promptTokens: m.promptTokens,
            completionTokens: m.completionTokens,
            timing: m.timing,
            speculation: spec && { ...spec, meanAcceptanceLength: meanAcceptanceLength(spec) },
          };
          return;
        }
      }
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
      this.channels.delete(id);
      // consumer stopped early (disconnect, error): the worker must drop the sequence
      if (!finished) this.worker.postMessage({ type: 'cancel', id });
    }
  }

  private async collectPromptLogprobs(ch: Channel, n: number): Promise<WireLogprob[]> {
    const out: WireLogprob[] = [];
    const early: FromWorker[] = [];
    while (out.length < n) {
      const m = await ch.next();
      if (m.type === 'prompt_logprobs') out.push(...m.entries);
      else if (m.type === 'error') throw workerError(m);
      else early.push(m);
    }
    ch.unshift(early);
    return out;
  }

  private toTokenLogprobs(entries: WireLogprob[], startOffset: number): TokenLogprob[] {
    let off = startOffset;
    return entries.map((e) => {
      const token = this.codec.tokenText(e.id);
      const r: TokenLogprob = {
        token,
        tokenId: e.id,
        logprob: e.logprob,
        top: e.top.map((t) => ({ token: this.codec.tokenText(t.id), logprob: t.logprob })),
        textOffset: off,
      };
      off += token.length;
      return r;
    });
  }
}

/** Seconds a client should wait after a 429 from a full queue or KV budget. */
const QUEUE_RETRY_AFTER_S = 1;

function workerError(m: Extract<FromWorker, { type: 'error' }>): ApiError {
  return new ApiError(m.code, m.message, null, m.code === 'queue_full' ? QUEUE_RETRY_AFTER_S : undefined);
}
