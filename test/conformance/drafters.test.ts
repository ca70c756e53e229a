// The drafter conformance suite (suite.ts) on the committed default model, in every weight format it
// ships (fp32, int8, int4 target graphs) and over the SAQ KV cache.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { WEIGHT_DTYPES, type WeightDtype } from '../../src/model/config.ts';
import { startEngine } from '../helpers/engine.ts';
import { drafterConformance } from './suite.ts';

const CONFIGS: { dtype: WeightDtype; kvCache: 'fp32' | 'saq' }[] = [
  ...WEIGHT_DTYPES.map((dtype) => ({ dtype, kvCache: 'fp32' as const })),
  // SAQ rewrites committed rows as a sequence grows (demotions at 64, 96, ... tokens here): greedy
  // runs reach them, and speculative decoding must give what plain decoding over SAQ gives
  { dtype: 'int8', kvCache: 'saq' },
];

for (const { dtype, kvCache } of CONFIGS) describe(`${dtype} weights, ${kvCache} KV cache`, () => {
  drafterConformance(async () => {
    const engine = await startEngine({ draftPolicy: 'static', dtype, kvCache });
    assert.equal(engine.info.dtype, dtype);
    return engine;
  }, { kvCache });
});
