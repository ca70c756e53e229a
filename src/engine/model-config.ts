// Reads a Hugging Face-style model folder and works out which ONNX layout it has.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Weight formats a model folder can ship its target graphs in (models/tooling/graph.py). */
export const WEIGHT_DTYPES = ['fp32', 'int8', 'int4'] as const;
export type WeightDtype = (typeof WEIGHT_DTYPES)[number];

/** File-name suffix of each format's graphs: decoder_spec{suffix}.onnx, model{suffix}.onnx,
 *  kangaroo/deep{suffix}.onnx. transformers.js's names, so its `dtype: 'int8' | 'q4'` finds the
 *  standard graphs too. */
export const DTYPE_SUFFIX: Record<WeightDtype, string> = { fp32: '', int8: '_int8', int4: '_q4' };

/** One weight format's target graph. */
export interface ModelVariant {
  dtype: WeightDtype;
  /** The ONNX file the engine runs, absolute. */
  onnxPath: string;
  layout: 'speculative' | 'optimum';
}

export interface ModelConfig {
  dir: string;
  id: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  contextLength: number;
  eosTokenIds: number[];
  /** The fp32 graph: the file the engine runs unless another weight format is chosen, absolute. */
  onnxPath: string;
  /** 'speculative': this project's layout (tree mask, hidden states, new-rows-only K/V).
   *  'optimum': Hugging Face Optimum decoder layout (2-D mask, causal in graph, full present). */
  layout: 'speculative' | 'optimum';
  /** Every weight format the folder has graphs for (fp32 always). */
  variants: Partial<Record<WeightDtype, ModelVariant>>;
  /** Layers before the `hidden_shallow` output (Kangaroo's exit layer). Both layouts take past K/V
   *  head-major, [B, KV, P, hd]; the speculative one outputs only the new rows, [B, T, KV, hd]. */
  shallowLayers?: number;
}

function readJson(file: string): any {
  return JSON.parse(readFileSync(file, 'utf8'));
}

export function loadModelConfig(dir: string, id?: string): ModelConfig {
  const abs = path.resolve(dir);
  const cfgPath = path.join(abs, 'config.json');
  if (!existsSync(cfgPath)) throw new Error(`model folder ${abs} has no config.json`);
  const cfg = readJson(cfgPath);
  const gen = existsSync(path.join(abs, 'generation_config.json')) ? readJson(path.join(abs, 'generation_config.json')) : {};
  const eosRaw = gen.eos_token_id ?? cfg.eos_token_id;
  const eos = eosRaw === undefined ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  const spec = cfg.specserve ?? {};
  const specPath = spec.speculative_onnx ? path.join(abs, spec.speculative_onnx) : undefined;
  const stdPath = path.join(abs, spec.standard_onnx ?? 'onnx/model.onnx');
  let onnxPath: string;
  let layout: ModelConfig['layout'];
  if (specPath && existsSync(specPath)) {
    // the first exports took a token-major past ([B, P, KV, hd]), which the graph copied every step
    if (spec.past_layout !== 'head-major')
      throw new Error(`model folder ${abs}: ${spec.speculative_onnx} takes a token-major past; re-export it with models/tooling/export.py (and kangaroo.py)`);
    onnxPath = specPath;
    layout = 'speculative';
  } else if (existsSync(stdPath)) {
    onnxPath = stdPath;
    layout = 'optimum';
  } else {
    throw new Error(`model folder ${abs} has no ONNX file (looked for ${specPath ?? ''} ${stdPath})`);
  }
  const variants: ModelConfig['variants'] = { fp32: { dtype: 'fp32', onnxPath, layout } };
  for (const dtype of WEIGHT_DTYPES) {
    if (dtype === 'fp32') continue;
    const file = path.join(path.dirname(onnxPath), path.basename(onnxPath, '.onnx') + DTYPE_SUFFIX[dtype] + '.onnx');
    if (existsSync(file)) variants[dtype] = { dtype, onnxPath: file, layout };
  }
  const heads = cfg.num_attention_heads;
  return {
    dir: abs,
    id: id ?? path.basename(abs),
    vocabSize: cfg.vocab_size,
    hiddenSize: cfg.hidden_size,
    numLayers: cfg.num_hidden_layers,
    numKvHeads: cfg.num_key_value_heads ?? heads,
    headDim: cfg.head_dim ?? cfg.hidden_size / heads,
    contextLength: cfg.max_position_embeddings ?? gen.max_length ?? 2048,
    eosTokenIds: eos,
    onnxPath,
    layout,
    variants,
    shallowLayers: spec.shallow_layers,
  };
}

/** Which weights `--dtype` serves. 'auto' picks int8 on the CPU provider when the folder has it
 *  (specserve-tiny: held-out perplexity +0.02% over fp32, 99.2% of top-1 predictions the same, a
 *  decode step 1.87x faster; int4 is +0.67% and 92.7% for 7% more speed per step and none in the
 *  engine: `npm run bench:dtypes`, docs/benchmarks.md), and fp32 on CUDA, where MatMulNBits' int8
 *  compute is a CPU path. */
export function resolveVariant(cfg: ModelConfig, requested: WeightDtype | 'auto', provider: 'cpu' | 'cuda'): ModelVariant {
  if (requested === 'auto') return (provider === 'cpu' ? cfg.variants.int8 : undefined) ?? cfg.variants.fp32!;
  const v = cfg.variants[requested];
  if (v) return v;
  const want = path.basename(cfg.onnxPath, '.onnx') + DTYPE_SUFFIX[requested] + '.onnx';
  const have = WEIGHT_DTYPES.filter((d) => cfg.variants[d]).join(', ');
  throw new Error(
    `model folder ${cfg.dir} has no ${requested} graph (onnx/${want}); it has: ${have}. ` +
      'Write the others with: /usr/bin/python3 models/tooling/write_graphs.py MODEL_DIR',
  );
}
