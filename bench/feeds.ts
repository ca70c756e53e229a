// Feeds for timing the model's graphs outside the engine (bench/head-cost.ts, bench/kangaroo-cost.ts),
// shaped from the model's config.json rather than written-in dimensions.
import ort from 'onnxruntime-node';
import type { ModelConfig } from '../src/model/config.ts';

/** What a past K/V tensor's shape needs of a model. */
type KvDims = Pick<ModelConfig, 'numKvHeads' | 'headDim'>;

/** One layer's past keys or values, head-major [1, kvHeads, rows, headDim], every entry `fill`. */
export function pastTensor(cfg: KvDims, rows: number, fill = 0): ort.Tensor {
  return new ort.Tensor('float32', new Float32Array(cfg.numKvHeads * rows * cfg.headDim).fill(fill), [1, cfg.numKvHeads, rows, cfg.headDim]);
}

/** `past_key_values.{i}.key/value` of `rows` rows for layers [from, to). */
export function pastFeeds(cfg: KvDims, from: number, to: number, rows: number, fill = 0): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {};
  for (let i = from; i < to; i++) for (const x of ['key', 'value']) f[`past_key_values.${i}.${x}`] = pastTensor(cfg, rows, fill);
  return f;
}

/** Position, cache slot and mask inputs of T new tokens after P cached rows, in a past buffer of
 *  P + T rows (the target graphs write each new token's K/V into its slot). */
export function rowFeeds(T: number, P: number): Record<string, ort.Tensor> {
  const S = P + T;
  const bias = new Float32Array(T * S);
  for (let t = 0; t < T; t++) bias.fill(-1e9, t * S + P + t + 1, (t + 1) * S);
  const pos = BigInt64Array.from({ length: T }, (_, i) => BigInt(P + i));
  return {
    position_ids: new ort.Tensor('int64', pos, [1, T]),
    cache_position: new ort.Tensor('int64', pos, [1, T]),
    attention_bias: new ort.Tensor('float32', bias, [1, 1, T, S]),
  };
}

/** A batch-1 forward of decoder_spec.onnx: T new tokens (id 0) at positions P.. after P rows of past. */
export function stepFeeds(cfg: ModelConfig, T: number, P: number, fill = 0): Record<string, ort.Tensor> {
  return {
    input_ids: new ort.Tensor('int64', new BigInt64Array(T), [1, T]),
    ...rowFeeds(T, P),
    ...pastFeeds(cfg, 0, cfg.numLayers, P + T, fill),
  };
}
