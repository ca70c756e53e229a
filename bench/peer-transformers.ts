// The peer: transformers.js (@huggingface/transformers) generating greedily from the same weights in
// the standard-layout ONNX file of the same format (onnx/model.onnx, model_int8.onnx, model_q4.onnx:
// transformers.js's own names for its dtypes fp32, int8, q4), on onnxruntime, local files only.
import type { WeightDtype } from '../src/model/config.ts';
import path from 'node:path';

export class TransformersPeer {
  private constructor(
    private readonly model: any,
    private readonly tokenizer: any,
  ) {}

  static async load(modelDir: string, threads: number, weights: WeightDtype = 'fp32'): Promise<TransformersPeer> {
    const tf = await import('@huggingface/transformers');
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = path.dirname(path.resolve(modelDir)) + '/';
    const name = path.basename(modelDir);
    const model = await tf.AutoModelForCausalLM.from_pretrained(name, {
      dtype: ({ fp32: 'fp32', int8: 'int8', int4: 'q4' } as const)[weights],
      device: 'cpu',
      session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
    });
    const tokenizer = await tf.AutoTokenizer.from_pretrained(name);
    return new TransformersPeer(model, tokenizer);
  }

  /** Greedy generation of exactly `maxTokens` tokens; returns the number generated. */
  async generate(prompt: string, maxTokens: number): Promise<number> {
    const inputs = this.tokenizer(prompt);
    const out = await this.model.generate({ ...inputs, max_new_tokens: maxTokens, min_new_tokens: maxTokens, do_sample: false });
    return out.dims[1] - inputs.input_ids.dims[1];
  }
}
