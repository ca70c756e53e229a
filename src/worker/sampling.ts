// Logit processing and sampling. The same `warp` is what plain decoding samples from and what the
// speculative verifier checks drafts against, so the two can never disagree on the distribution.
import type { SamplingParams } from '../engine/types.ts';
import type { Rng } from '../util/rng.ts';

export function argmax(a: Float32Array | Float64Array, off = 0, n = a.length - off): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = a[off + i];
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/** Token counts of the generated text so far, for presence/frequency penalties. */
export type TokenCounts = Map<number, number>;

/** Applies penalties (to a copy) and returns the logits plain decoding would see. */
export function penalize(logits: Float32Array, params: SamplingParams, counts: TokenCounts | undefined): Float32Array {
  if (!counts || counts.size === 0 || (params.presencePenalty === 0 && params.frequencyPenalty === 0)) return logits;
  const out = Float32Array.from(logits);
  for (const [tok, c] of counts) out[tok] -= params.presencePenalty + params.frequencyPenalty * c;
  return out;
}

/**
 * The sampling distribution: temperature, then top-k, then top-p (vLLM's order), as a dense
 * probability vector [vocab]. For temperature 0 it is one-hot at the argmax.
 */
export function warp(logits: Float32Array, params: SamplingParams, counts?: TokenCounts): Float64Array {
  const x = penalize(logits, params, counts);
  const V = x.length;
  const p = new Float64Array(V);
  if (params.temperature === 0) {
    p[argmax(x)] = 1;
    return p;
  }
  const t = params.temperature;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < V; i++) {
    const e = Math.exp((x[i] - max) / t);
    p[i] = e;
    sum += e;
  }
  for (let i = 0; i < V; i++) p[i] /= sum;
  const k = params.topK > 0 && params.topK < V ? params.topK : 0;
  if (k || params.topP < 1) {
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
    let keep = k || V;
    if (params.topP < 1) {
      let mass = 0;
      for (let i = 0; i < keep; i++) {
        mass += p[order[i]];
        // keep the smallest prefix whose mass reaches top_p (always at least one token)
        if (mass >= params.topP) {
          keep = i + 1;
          break;
        }
      }
    }
    let kept = 0;
    for (let i = 0; i < keep; i++) kept += p[order[i]];
    for (let i = keep; i < V; i++) p[order[i]] = 0;
    for (let i = 0; i < keep; i++) p[order[i]] /= kept;
  }
  return p;
}

/** Draws one token from a probability vector (need not be normalised). */
export function sampleFrom(p: Float64Array, rng: Rng): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += p[i];
  let r = rng.next() * total;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i] <= 0) continue;
    last = i;
    r -= p[i];
    if (r < 0) return i;
  }
  return last; // rounding: fall back to the last token with mass
}

/** log-softmax of raw logits (what OpenAI-style `logprobs` report), [vocab]. */
export function logSoftmax(logits: Float32Array, off = 0, n = logits.length - off): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[off + i] > max) max = logits[off + i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[off + i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = logits[off + i] - lse;
  return out;
}

export function topN(logp: Float64Array, n: number): { id: number; logprob: number }[] {
  if (n <= 0) return [];
  const best: { id: number; logprob: number }[] = [];
  for (let i = 0; i < logp.length; i++) {
    const v = logp[i];
    if (best.length < n || v > best[best.length - 1].logprob) {
      let j = best.length < n ? best.length : best.length - 1;
      if (best.length < n) best.push({ id: i, logprob: v });
      while (j > 0 && best[j - 1].logprob < v) {
        best[j] = best[j - 1];
        j--;
      }
      best[j] = { id: i, logprob: v };
    }
  }
  return best;
}
