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

/** The two ONNX layouts a target graph can have. 'speculative': this project's (tree mask, hidden
 *  states, new-rows-only K/V). 'optimum': Hugging Face Optimum's decoder (2-D mask, causal in the
 *  graph, full present). The worker picks its forward module from this once (forward/layout.ts). */
export type GraphLayoutName = 'speculative' | 'optimum';

/** One weight format's target graph. */
export interface ModelVariant {
  dtype: WeightDtype;
  /** The ONNX file the engine runs, absolute. */
  onnxPath: string;
  layout: GraphLayoutName;
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
  /** The default graph, absolute: the fp32 one, or the first of int8, int4 in a folder without it. */
  onnxPath: string;
  layout: GraphLayoutName;
  /** Every weight format the folder has graphs for. */
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
  // the first exports took a token-major past ([B, P, KV, hd]), which the graph copied every step
  if (spec.speculative_onnx && spec.past_layout !== 'head-major' && existsSync(path.join(abs, spec.speculative_onnx)))
    throw new Error(`model folder ${abs}: ${spec.speculative_onnx} takes a token-major past (an older export); write its graphs again: /usr/bin/python3 models/tooling/write_graphs.py ${abs} (or npm run convert from the checkpoint)`);
  const variants = findVariants(abs, spec);
  // the fp32 graph when there is one; a folder converted to 8- or 4-bit weights only has no fp32 graph
  const first = WEIGHT_DTYPES.map((d) => variants[d]).find((v) => v !== undefined);
  if (!first) {
    const looked = [spec.speculative_onnx, spec.standard_onnx ?? 'onnx/model.onnx'].filter(Boolean).join(', ');
    throw new Error(`model folder ${abs} has no ONNX file (looked for ${looked})`);
  }
  const { onnxPath, layout } = first;
  const heads = cfg.num_attention_heads;
  return {
    dir: abs,
    id: id ?? path.basename(abs),
    vocabSize: cfg.vocab_size,
    hiddenSize: cfg.hidden_size,
    numLayers: cfg.num_hidden_layers,
    numKvHeads: cfg.num_key_value_heads ?? heads,
    headDim: cfg.head_dim ?? cfg.hidden_size / heads,
    // a conversion may serve less than the checkpoint's maximum (convert.py --context)
    contextLength: spec.context ?? cfg.max_position_embeddings ?? gen.max_length ?? 2048,
    eosTokenIds: eos,
    onnxPath,
    layout,
    variants,
    shallowLayers: spec.shallow_layers,
  };
}

/** The target graphs of each weight format: config.json's specserve.dtypes (written by
 *  models/tooling/write_graphs.py and convert.py), else the fp32 files it names and the suffixed
 *  files beside them. Each format is served in the speculative layout when its file exists, else the
 *  standard (Optimum) one. */
function findVariants(dir: string, spec: any): ModelConfig['variants'] {
  const listed: Partial<Record<WeightDtype, { speculative_onnx?: string; standard_onnx?: string }>> = spec.dtypes ?? {};
  const variants: ModelConfig['variants'] = {};
  for (const dtype of WEIGHT_DTYPES) {
    const sfx = DTYPE_SUFFIX[dtype];
    const withSuffix = (file: string | undefined) => file && file.replace(/\.onnx$/, `${sfx}.onnx`);
    const files = listed[dtype] ?? {
      speculative_onnx: withSuffix(spec.speculative_onnx),
      standard_onnx: withSuffix(spec.standard_onnx ?? 'onnx/model.onnx'),
    };
    const spec_ = files.speculative_onnx && path.join(dir, files.speculative_onnx);
    const std = files.standard_onnx && path.join(dir, files.standard_onnx);
    if (spec_ && existsSync(spec_)) variants[dtype] = { dtype, onnxPath: spec_, layout: 'speculative' };
    else if (std && existsSync(std)) variants[dtype] = { dtype, onnxPath: std, layout: 'optimum' };
  }
  return variants;
}

/** Which weights `--dtype` serves. 'auto' picks int8 on the CPU provider when the folder has it
 *  (specserve-tiny: held-out perplexity +0.02% over fp32, 99.2% of top-1 predictions the same, a
 *  decode step 1.87x faster; int4 is +0.67% and 92.7% for 7% more speed per step and none in the
 *  engine: `npm run bench:dtypes`, docs/benchmarks.md), and fp32 on CUDA, where MatMulNBits' int8
 *  compute is a CPU path. */
export function resolveVariant(cfg: ModelConfig, requested: WeightDtype | 'auto', provider: 'cpu' | 'cuda'): ModelVariant {
  if (requested === 'auto')
    return (provider === 'cpu' ? cfg.variants.int8 : undefined) ?? cfg.variants.fp32 ?? WEIGHT_DTYPES.map((d) => cfg.variants[d]).find((v) => v)!;
  const v = cfg.variants[requested];
  if (v) return v;
  const stem = path.basename(cfg.onnxPath, '.onnx').replace(/_(int8|q4)$/, '');
  const want = stem + DTYPE_SUFFIX[requested] + '.onnx';
  const have = WEIGHT_DTYPES.filter((d) => cfg.variants[d]).join(', ');
  throw new Error(
    `model folder ${cfg.dir} has no ${requested} graph (onnx/${want}); it has: ${have}. ` +
      'Write the others with: npm run convert -- --from CHECKPOINT_DIR --to MODEL_DIR --dtype ' + requested +
      ' (or /usr/bin/python3 models/tooling/write_graphs.py MODEL_DIR when the folder has its fp32 graph)',
  );
}
