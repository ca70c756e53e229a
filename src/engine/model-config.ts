// Reads a Hugging Face-style model folder and works out which ONNX layout it has.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

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
  /** The ONNX file the engine will run, absolute. */
  onnxPath: string;
  /** 'speculative': this project's layout (tree mask, hidden states, new-rows-only K/V).
   *  'optimum': Hugging Face Optimum decoder layout (2-D mask, causal in graph, full present). */
  layout: 'speculative' | 'optimum';
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
    shallowLayers: spec.shallow_layers,
  };
}
