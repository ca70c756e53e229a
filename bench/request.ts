// The request every benchmark sends: greedy, a fixed number of tokens (EOS ignored), no stop strings,
// no logprobs, plain decoding unless `over` names a drafter.
import type { TextRequest } from '../src/engine/types.ts';

export const GREEDY = { temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0 };

export function greedyRequest(prompt: string | number[], over: Partial<TextRequest> = {}): TextRequest {
  return { prompt, maxTokens: 1, minTokens: 0, ignoreEos: true, stop: [], sampling: GREEDY, logprobs: null, echo: false, speculative: { drafter: 'none' }, ...over };
}
