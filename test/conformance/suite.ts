// The drafter conformance suite: the checks every drafter passes on every model and graph variant
// specserve ships (test/conformance/drafters.test.ts: the default model's fp32, int8 and int4
// graphs and the SAQ KV cache; converted.test.ts: a converted checkpoint with drafters trained for it):
//   greedy: token-for-token identical to plain decoding across a varied prompt set and lengths
//   sampling: the output distribution over a short horizon matches plain sampling (chi-square
//   homogeneity test on many seeded samples)
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LocalEngine } from '../../src/engine/index.ts';
import { chiSquareCritical } from '../helpers/stats.ts';
import { generate, PROMPTS, request } from '../helpers/engine.ts';

export const DRAFTERS = ['prompt-lookup', 'aded', 'medusa', 'hydra', 'kangaroo', 'chimera'];
const prompts = Object.values(PROMPTS).flat();

/** Runs the suite inside the caller's describe(). `start` builds the engine under test; it must use
 *  the static draft policy (drafting must be deterministic for the state-leak check; the default
 *  goodput policy only changes how many tokens are drafted, test/e2e/load.test.ts runs it). */
export function drafterConformance(start: () => Promise<LocalEngine>, opts: { kvCache: 'fp32' | 'saq' }): void {
  let engine: LocalEngine;
  before(async () => {
    engine = await start();
  });
  // plain sampling's counts, the same for every drafter's chi-square test: drawn once
  let plainCounts: Promise<Counts> | undefined;
  after(async () => {
    await engine?.close();
  });

  for (const drafter of DRAFTERS) {
    describe(`drafter ${drafter}`, () => {
      test('is available on the model', () => {
        const info = engine.drafters().find((d) => d.name === drafter);
        assert.ok(info?.available, `${drafter} unavailable: ${info?.reason}`);
      });

      test('greedy output is token-for-token identical to plain decoding', async () => {
        let drafted = 0;
        let accepted = 0;
        for (const [i, prompt] of prompts.entries()) {
          const maxTokens = [16, 48, 96][i % 3];
          const plain = await generate(engine, request(prompt, { maxTokens }));
          const spec = await generate(engine, request(prompt, { maxTokens, speculative: { drafter, maxDraftTokens: 8 } }));
          assert.deepEqual(spec.tokenIds, plain.tokenIds, `prompt ${i} (${JSON.stringify(prompt.slice(0, 30))}) diverged`);
          assert.equal(spec.text, plain.text);
          assert.equal(spec.finishReason, plain.finishReason);
          drafted += spec.speculation!.draftTokens;
          accepted += spec.speculation!.acceptedTokens;
          // decode timing: a plain step verifies its root only; a speculative one its root and drafts
          const pt = plain.timing!, st = spec.timing!;
          assert.equal(pt.decodeSteps, plain.tokenIds.length - 1);
          assert.equal(pt.verifiedTokens, pt.decodeSteps);
          assert.equal(pt.draftMs, 0);
          assert.ok(pt.forwardMs > 0 || pt.decodeSteps === 0);
          assert.equal(st.verifiedTokens, st.decodeSteps + spec.speculation!.draftTokens);
          assert.ok(st.draftMs > 0 || spec.speculation!.draftSteps === 0, `drafter ${drafter} drafted in no time`);
        }
        // the suite only means something if drafts were actually verified and some accepted
        assert.ok(drafted > 0 && accepted > 0, `drafted ${drafted}, accepted ${accepted}`);
      });

      test('with penalties and min_tokens greedy is still identical', async () => {
        const sampling = { temperature: 0, topP: 1, topK: 0, presencePenalty: 0.5, frequencyPenalty: 0.3 };
        for (const prompt of prompts.slice(0, 4)) {
          const base = { maxTokens: 40, minTokens: 20, sampling };
          const plain = await generate(engine, request(prompt, base));
          const spec = await generate(engine, request(prompt, { ...base, speculative: { drafter } }));
          assert.deepEqual(spec.tokenIds, plain.tokenIds);
        }
      });

      const saqSkip = opts.kvCache === 'saq' && 'its samples (a short prompt, 5 tokens) stay inside the fp32 window, where SAQ changes nothing: the int8 run covers it';
      test('sampling: output distribution matches plain sampling (chi-square)', { skip: saqSkip }, async () => {
        // a repetitive prompt so drafts are proposed and accepted at the sampled positions
        const prompt = '    def __init__(self, *args, **kwargs):\n        return self.data\n\n    def __init__(self, *args, **kwargs):\n        return self.data\n\n    def __init__(self';
        const count = (spec: string) => sampleCounts(engine, prompt, spec);
        plainCounts ??= count('none');
        const plain = await plainCounts;
        const spec = await count(drafter);
        assert.ok(spec.accepted > SAMPLES / 10, `too few accepted drafts (${spec.accepted}) for the test to mean anything`);
        const [stat, df] = homogeneity(plain.m, spec.m);
        const crit = chiSquareCritical(df, 1e-3);
        assert.ok(stat < crit, `chi-square ${stat.toFixed(1)} >= ${crit.toFixed(1)} (df ${df})`);
      });

      test('per-request state is released', async () => {
        await generate(engine, request(prompts[0], { maxTokens: 8, speculative: { drafter } }));
        // a fresh request after many must behave exactly like the first one (no leaked boosts)
        const a = await generate(engine, request(prompts[1], { maxTokens: 24, speculative: { drafter } }));
        for (const p of prompts) await generate(engine, request(p, { maxTokens: 16, speculative: { drafter } }));
        const b = await generate(engine, request(prompts[1], { maxTokens: 24, speculative: { drafter } }));
        assert.deepEqual(b.tokenIds, a.tokenIds);
        assert.equal(b.speculation!.draftTokens, a.speculation!.draftTokens, 'draft behaviour changed: state leaked between requests');
      });
    });
  }

  describe('drafters batched together', () => {
    test('concurrent requests mixing every drafter and plain decoding get what each gets alone', async () => {
      // one batch holds Kangaroo rows (verified by the deep layers alone), tree rows and plain rows,
      // prompts at different stages: every output must still be the plain greedy output
      const modes = ['none', ...DRAFTERS];
      const reqs = prompts.slice(0, 14).map((prompt, i) =>
        request(prompt, { maxTokens: 40, speculative: { drafter: modes[i % modes.length], maxDraftTokens: 6 } }),
      );
      const alone: number[][] = [];
      for (const r of reqs) alone.push((await generate(engine, r)).tokenIds);
      const together = await Promise.all(reqs.map((r) => generate(engine, r)));
      together.forEach((g, i) => assert.deepEqual(g.tokenIds, alone[i], `request ${i} (${modes[i % modes.length]}) changed when batched`));
      const plain = await Promise.all(reqs.map((r) => generate(engine, { ...r, speculative: { drafter: 'none' } })));
      plain.forEach((g, i) => assert.deepEqual(g.tokenIds, alone[i], `request ${i} differs from plain decoding`));
    });
  });
}

/** Seeded samples per chi-square test. */
const SAMPLES = 500;

interface Counts {
  /** How often each 5-token continuation was sampled. */
  m: Map<string, number>;
  /** Draft tokens accepted over all samples. */
  accepted: number;
}

async function sampleCounts(engine: LocalEngine, prompt: string, drafter: string): Promise<Counts> {
  const sampling = (seed: number) => ({ temperature: 0.7, topP: 1, topK: 3, seed, presencePenalty: 0, frequencyPenalty: 0 });
  const m = new Map<string, number>();
  let accepted = 0;
  for (let i = 0; i < SAMPLES; i++) {
    const g = await generate(engine, request(prompt, { maxTokens: 5, ignoreEos: true, sampling: sampling(1000 + i), speculative: { drafter } }));
    const key = g.tokenIds.join(',');
    m.set(key, (m.get(key) ?? 0) + 1);
    accepted += g.speculation?.acceptedTokens ?? 0;
  }
  return { m, accepted };
}

/** Two-sample chi-square test of homogeneity, pooling categories with small expected counts. */
function homogeneity(a: Map<string, number>, b: Map<string, number>): [number, number] {
  const na = [...a.values()].reduce((x, y) => x + y, 0);
  const nb = [...b.values()].reduce((x, y) => x + y, 0);
  const keys = new Set([...a.keys(), ...b.keys()]);
  let stat = 0;
  let df = -1;
  let poolA = 0;
  let poolB = 0;
  const term = (oa: number, ob: number) => {
    const tot = oa + ob;
    const ea = (tot * na) / (na + nb);
    const eb = (tot * nb) / (na + nb);
    return ((oa - ea) ** 2) / ea + ((ob - eb) ** 2) / eb;
  };
  for (const k of keys) {
    const oa = a.get(k) ?? 0;
    const ob = b.get(k) ?? 0;
    if (oa + ob < 10) {
      poolA += oa;
      poolB += ob;
      continue;
    }
    stat += term(oa, ob);
    df++;
  }
  if (poolA + poolB > 0) {
    stat += term(poolA, poolB);
    df++;
  }
  return [stat, Math.max(df, 1)];
}
