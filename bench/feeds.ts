// Feeds for timing the model's graphs outside the engine (bench/head-cost.ts, bench/kangaroo-cost.ts),
// shaped from the model's config.json rather than written-in dimensions.
import ort from 'onnxruntime-node';
import type { ModelConfig } from '../src/engine/model-config.ts';

/** One layer's past keys or values, head-major [1, kvHeads, P, headDim], every entry `fill`. */
export function pastTensor(cfg: ModelConfig, P: number, fill = 0): ort.Tensor {
  return new ort.Tensor('float32', new Float32Array(cfg.numKvHeads * P * cfg.headDim).fill(fill), [1, cfg.numKvHeads, P, cfg.headDim]);
}

/** `past_key_values.{i}.key/value` for layers [from, to). */
export function pastFeeds(cfg: ModelConfig, from: number, to: number, P: number, fill = 0): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {};
  for (let i = from; i < to; i++) for (const x of ['key', 'value']) f[`past_key_values.${i}.${x}`] = pastTensor(cfg, P, fill);
  return f;
}

/** A batch-1 forward of decoder_spec.onnx: T new tokens (id 0) at positions P.. after P rows of past. */
export function stepFeeds(cfg: ModelConfig, T: number, P: number, fill = 0): Record<string, ort.Tensor> {
  return {
    input_ids: new ort.Tensor('int64', new BigInt64Array(T), [1, T]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(P + i)), [1, T]),
    attention_bias: new ort.Tensor('float32', new Float32Array(T * (P + T)), [1, 1, T, P + T]),
    ...pastFeeds(cfg, 0, cfg.numLayers, P, fill),
  };
}
