// The peer: transformers.js (@huggingface/transformers) generating greedily from the same
// standard-layout ONNX file (onnx/model.onnx) on the same onnxruntime, local files only.
import path from 'node:path';

export class TransformersPeer {
  private constructor(
    private readonly model: any,
    private readonly tokenizer: any,
  ) {}

  static async load(modelDir: string, threads: number): Promise<TransformersPeer> {
    const tf = await import('@huggingface/transformers');
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = path.dirname(path.resolve(modelDir)) + '/';
    const name = path.basename(modelDir);
    const model = await tf.AutoModelForCausalLM.from_pretrained(name, {
      dtype: 'fp32',
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
