// Runs the target ONNX graph. One forward takes a batch of rows, each with some new tokens after
// its own cached prefix. The runner hides the two layouts behind one call.
import { existsSync } from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { resolveVariant, type GraphLayoutName, type ModelConfig, type ModelVariant, type WeightDtype } from '../model/config.ts';
import { NEG_BIAS } from '../model/onnx-layout.ts';

const require = createRequire(import.meta.url);

export interface ForwardInput {
  batch: number;
  /** New tokens per row (rows shorter than this are padded and fully masked). */
  newTokens: number;
  /** Rows of the past buffers. Speculative layout: every row's cached rows and new tokens fit
   *  (the graph writes each new token's K/V at its cachePosition inside the buffer; other rows are
   *  masked). Optimum layout: the cached rows, the new ones are appended after them. */
  past: number;
  /** [batch, newTokens] */
  inputIds: BigInt64Array;
  /** [batch, newTokens] */
  positionIds: BigInt64Array;
  /** [batch, newTokens]: the past-buffer row each new token's K/V takes. Speculative layout only. */
  cachePosition?: BigInt64Array;
  /** [batch, 1, newTokens, past]; 0 = attend, -1e9 = blocked. Speculative layout only. */
  attentionBias?: Float32Array;
  /** [batch, past + newTokens] 1/0 padding mask. Optimum layout only. */
  attentionMask?: BigInt64Array;
  /** Per layer: [batch, kvHeads, past, headDim] (both layouts). */
  pastKeys: Float32Array[];
  pastValues: Float32Array[];
}

export interface ForwardOutput {
  /** [batch, newTokens, vocab] */
  logits: Float32Array;
  /** [batch, newTokens, hidden]; speculative layout only. */
  hidden?: Float32Array;
  /** [batch, newTokens, hidden]; speculative layout only. */
  hiddenShallow?: Float32Array;
  /** Per layer: [batch, newTokens, kvHeads, headDim] (speculative) or the full present
   *  [batch, kvHeads, past + newTokens, headDim] (optimum). */
  keys: Float32Array[];
  values: Float32Array[];
}

/**
 * A batch-1 input of `tokens` as a chain after `cached` rows (prefill chunks, plain steps, tools and
 * benchmarks): past buffers of cached + T rows, token i in cache slot cached + i, causal mask.
 * `past` per layer head-major [kvHeads, cached, headDim]; zeros when absent.
 */
export function chainInput(
  cfg: { numLayers: number; numKvHeads: number; headDim: number },
  tokens: number[],
  cached: number,
  past?: { keys: Float32Array[]; values: Float32Array[] },
): ForwardInput {
  const T = tokens.length;
  const P = cached + T;
  const { numKvHeads: H, headDim: D } = cfg;
  const buffer = (rows?: Float32Array) => {
    const out = new Float32Array(H * P * D);
    if (rows) for (let h = 0; h < H; h++) out.set(rows.subarray(h * cached * D, (h + 1) * cached * D), h * P * D);
    return out;
  };
  const bias = new Float32Array(T * P);
  for (let t = 0; t < T; t++) bias.fill(NEG_BIAS, t * P + cached + t + 1, (t + 1) * P);
  return {
    batch: 1, newTokens: T, past: P,
    inputIds: BigInt64Array.from(tokens, BigInt),
    positionIds: BigInt64Array.from(tokens, (_, i) => BigInt(cached + i)),
    cachePosition: BigInt64Array.from(tokens, (_, i) => BigInt(cached + i)),
    attentionBias: bias,
    pastKeys: Array.from({ length: cfg.numLayers }, (_, l) => buffer(past?.keys[l])),
    pastValues: Array.from({ length: cfg.numLayers }, (_, l) => buffer(past?.values[l])),
  };
}

/** The target's layers [fromLayer, L) fed the residual stream after layer fromLayer (Kangaroo's
 *  verification: the drafter already ran the shallow layers for these rows). */
export interface DeepInput extends Omit<ForwardInput, 'inputIds' | 'attentionMask'> {
  /** [batch, newTokens, hidden] */
  hidden: Float32Array;
  /** Per layer >= fromLayer (index 0 = layer fromLayer): [batch, kvHeads, past, headDim]. */
  pastKeys: Float32Array[];
  pastValues: Float32Array[];
}

export type Provider = 'cuda' | 'cpu';

export interface RunnerOptions {
  provider: 'auto' | Provider;
  /** Which of the folder's weight formats to run ('auto': see resolveVariant). */
  dtype: WeightDtype | 'auto';
  threads: number;
  /** Let onnxruntime's idle intra-op threads spin (see ENGINE_DEFAULTS.spinThreads). */
  spinThreads?: boolean;
  log?: (msg: string) => void;
}

export class Runner {
  readonly layout: GraphLayoutName;
  /** Set when the model folder has the split deep graph (kangaroo/deep.onnx). */
  deep: { session: ort.InferenceSession; fromLayer: number } | null = null;
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly cfg: ModelConfig,
    /** The weight format and graph file this runner runs. */
    readonly variant: ModelVariant,
    readonly provider: Provider,
    /** Threads and spinning the target runs with (the deep graph runs with the same). */
    private readonly options: ort.InferenceSession.SessionOptions,
  ) {
    const names = session.inputNames;
    if (names.includes('attention_bias') && !names.includes('cache_position'))
      throw new Error(`${variant.onnxPath} appends new K/V after its past (an older export); write its graphs again: /usr/bin/python3 models/tooling/write_graphs.py MODEL_DIR (or npm run convert from the checkpoint)`);
    if (names.includes('attention_bias')) this.layout = 'speculative';
    else if (names.includes('attention_mask')) this.layout = 'optimum';
    else throw new Error(`unrecognised ONNX inputs: ${names.join(', ')}`);
  }

  static async create(cfg: ModelConfig, opts: RunnerOptions): Promise<Runner> {
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      interOpNumThreads: 1,
      executionMode: 'sequential',
      intraOpNumThreads: opts.threads > 0 ? opts.threads : autoThreads(),
      ...spinning(opts.spinThreads ?? false),
    };
    const log = opts.log ?? (() => {});
    const cudaLib = cudaProviderLibrary();
    if (opts.provider === 'auto' && !cudaLib) {
      log('execution provider: CPU (CUDA provider library not installed; on a GPU host run `npm run setup:cuda`)');
    } else if (opts.provider !== 'cpu') {
      const variant = resolveVariant(cfg, opts.dtype, 'cuda');
      try {
        const s = await ort.InferenceSession.create(variant.onnxPath, { ...base, executionProviders: ['cuda'] });
        log(`execution provider: CUDA (${variant.dtype} weights, ${variant.onnxPath})`);
        return new Runner(s, cfg, variant, 'cuda', base);
      } catch (err) {
        if (opts.provider === 'cuda') throw new Error(`CUDA execution provider requested but unavailable: ${(err as Error).message}`);
        log(`execution provider: CPU (CUDA unavailable: ${firstLine((err as Error).message)})`);
      }
    } else {
      log('execution provider: CPU (configured)');
    }
    const variant = resolveVariant(cfg, opts.dtype, 'cpu');
    const s = await ort.InferenceSession.create(variant.onnxPath, { ...base, executionProviders: ['cpu'] });
    log(`weights: ${variant.dtype} (${path.relative(cfg.dir, variant.onnxPath)})`);
    return new Runner(s, cfg, variant, 'cpu', base);
  }

  /** Loads the target's deep layers as a graph of their own (same provider, threads and
   *  spinning as the target), used to verify rows whose shallow layers a drafter already computed.
   *  Returns false when absent. */
  async loadDeep(file: string, fromLayer: number): Promise<boolean> {
    if (this.layout !== 'speculative' || !existsSync(file)) return false;
    const session = await ort.InferenceSession.create(file, { ...this.options, executionProviders: [this.provider] });
    this.deep = { session, fromLayer };
    return true;
  }

  async forwardDeep(x: DeepInput): Promise<ForwardOutput> {
    if (!this.deep) throw new Error('no deep graph loaded');
    const { batch: B, newTokens: T, past: P } = x;
    const { numLayers, numKvHeads: KV, headDim: HD, hiddenSize: D } = this.cfg;
    const from = this.deep.fromLayer;
    const feeds: Record<string, ort.Tensor> = {
      hidden_shallow: new ort.Tensor('float32', x.hidden, [B, T, D]),
      position_ids: new ort.Tensor('int64', x.positionIds, [B, T]),
      cache_position: new ort.Tensor('int64', x.cachePosition!, [B, T]),
      attention_bias: new ort.Tensor('float32', x.attentionBias!, [B, 1, T, P]),
    };
    for (let l = from; l < numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = new ort.Tensor('float32', x.pastKeys[l - from], [B, KV, P, HD]);
      feeds[`past_key_values.${l}.value`] = new ort.Tensor('float32', x.pastValues[l - from], [B, KV, P, HD]);
    }
    const out = await this.deep.session.run(feeds);
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    for (let l = from; l < numLayers; l++) {
      keys.push(out[`new_key_values.${l}.key`].data as Float32Array);
      values.push(out[`new_key_values.${l}.value`].data as Float32Array);
    }
    return { logits: out.logits.data as Float32Array, hidden: out.hidden.data as Float32Array, keys, values };
  }

  async forward(x: ForwardInput): Promise<ForwardOutput> {
    const { batch: B, newTokens: T, past: P } = x;
    const { numLayers, numKvHeads: KV, headDim: HD } = this.cfg;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', x.inputIds, [B, T]),
      position_ids: new ort.Tensor('int64', x.positionIds, [B, T]),
    };
    const spec = this.layout === 'speculative';
    if (spec) {
      feeds.cache_position = new ort.Tensor('int64', x.cachePosition!, [B, T]);
      feeds.attention_bias = new ort.Tensor('float32', x.attentionBias!, [B, 1, T, P]);
    } else feeds.attention_mask = new ort.Tensor('int64', x.attentionMask!, [B, P + T]);
    const pastDims = [B, KV, P, HD];
    for (let l = 0; l < numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = new ort.Tensor('float32', x.pastKeys[l], pastDims);
      feeds[`past_key_values.${l}.value`] = new ort.Tensor('float32', x.pastValues[l], pastDims);
    }
    const out = await this.session.run(feeds);
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    const prefix = spec ? 'new_key_values' : 'present';
    for (let l = 0; l < numLayers; l++) {
      keys.push(out[`${prefix}.${l}.key`].data as Float32Array);
      values.push(out[`${prefix}.${l}.value`].data as Float32Array);
    }
    return {
      logits: out.logits.data as Float32Array,
      hidden: spec ? (out.hidden.data as Float32Array) : undefined,
      hiddenShallow: spec ? (out.hidden_shallow.data as Float32Array) : undefined,
      keys,
      values,
    };
  }

  async release(): Promise<void> {
    await this.deep?.session.release();
    await this.session.release();
  }
}

/** `threads: 0`: the cores but one, which the main thread's HTTP/SSE work needs (options.ts). */
export function autoThreads(): number {
  return Math.max(1, os.availableParallelism() - 1);
}

/** onnxruntime-node loads the CUDA provider from this file, downloaded only on GPU hosts. */
function cudaProviderLibrary(): string | null {
  const dir = path.join(path.dirname(require.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  const file = path.join(dir, 'libonnxruntime_providers_cuda.so');
  return existsSync(file) ? file : null;
}

/** onnxruntime's intra-op threads spin between ops by default; with spinning off they sleep. */
function spinning(on: boolean): ort.InferenceSession.SessionOptions {
  return on ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } };
}

function firstLine(s: string): string {
  return s.split('\n')[0].slice(0, 200);
}
