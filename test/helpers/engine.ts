// Helpers for tests that drive the real engine on the committed default model.
import { createEngine, type EngineOptions, type LocalEngine } from '../../src/engine/index.ts';
import type { DecodeTiming, SamplingParams, SpeculationStats, TextRequest } from '../../src/engine/types.ts';
import { DEFAULT_MODEL_DIR } from './model.ts';

export const GREEDY: SamplingParams = { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0 };

export function startEngine(opts: Partial<EngineOptions> = {}): Promise<LocalEngine> {
  return createEngine({ modelDir: DEFAULT_MODEL_DIR, threads: 1, ...opts });
}

export function request(prompt: string | number[], over: Partial<TextRequest> = {}): TextRequest {
  return {
    prompt, maxTokens: 32, minTokens: 0, ignoreEos: false, stop: [], sampling: GREEDY,
    logprobs: null, echo: false, speculative: { drafter: 'none' }, ...over,
  };
}

export interface Generated {
  text: string;
  tokenIds: number[];
  finishReason: string;
  speculation?: SpeculationStats;
  timing?: DecodeTiming;
}

export async function generate(engine: LocalEngine, req: TextRequest): Promise<Generated> {
  let text = '';
  const tokenIds: number[] = [];
  for await (const ev of engine.generateText(req)) {
    if (ev.type === 'text') {
      text += ev.text;
      tokenIds.push(...ev.tokenIds);
    } else return { text, tokenIds, finishReason: ev.finishReason, speculation: ev.speculation, timing: ev.timing };
  }
  throw new Error('stream ended without a done event');
}

export { PROMPTS } from '../../bench/prompts.ts';
