// Emitting: the tokens a step produced go to the main thread, and the stop checks run on them here,
// in the worker (EOS, max_tokens, context, stop strings), so no step runs past a stop.
import type { FromWorker, StepOrigin, WireLogprob } from './protocol.ts';
import type { Row } from './plan.ts';
import { logSoftmax, topN } from './sampling.ts';
import type { Sequence } from './sequence.ts';

export type FinishReason = 'stop' | 'length';

export class Emitter {
  constructor(
    private readonly send: (m: FromWorker) => void,
    private readonly eos: ReadonlySet<number>,
    private readonly contextLength: number,
    /** Ends the sequence (done message, KV and drafter released). */
    private readonly finish: (s: Sequence, reason: FinishReason) => void,
  ) {}

  /**
   * Appends a step's tokens to the sequence and sends them, up to the first stop; returns how many
   * were kept. `beforeFinish` gets that count before a stop finishes the sequence (the done message
   * carries the statistics it updates).
   */
  tokens(s: Sequence, tokens: readonly number[], sourceLogits: readonly Float32Array[], origin: StepOrigin, beforeFinish?: (kept: number) => void): number {
    const ids: number[] = [];
    const lps: WireLogprob[] = [];
    let finish: FinishReason | null = null;
    for (let i = 0; i < tokens.length; i++) {
      const tok = tokens[i];
      ids.push(tok);
      s.generated++;
      s.tokens.push(tok);
      s.counts.set(tok, (s.counts.get(tok) ?? 0) + 1);
      if (s.req.logprobs !== null) {
        const lp = logSoftmax(sourceLogits[i]);
        lps.push({ id: tok, logprob: lp[tok], top: topN(lp, s.req.logprobs) });
      }
      if (s.stop?.push(tok)) finish = 'stop';
      else if (this.eos.has(tok) && !s.req.ignoreEos && s.generated >= s.req.minTokens) finish = 'stop';
      else if (s.generated >= s.req.maxTokens) finish = 'length';
      else if (s.tokens.length >= this.contextLength) finish = 'length'; // no position left for the next token
      if (finish) break;
    }
    s.root = ids[ids.length - 1];
    this.send({ type: 'tokens', id: s.id, ids, logprobs: s.req.logprobs !== null ? lps : undefined, origin });
    beforeFinish?.(ids.length);
    if (finish) this.finish(s, finish);
    return ids.length;
  }

  /** Log-probabilities of a prompt chunk's tokens (echo + logprobs); a chunk's first token is scored
   *  with the previous chunk's last row, kept in `promptLp`. */
  promptLogprobs(s: Sequence, r: Row, logitsAt: (node: number) => Float32Array): void {
    const prompt = s.req.promptIds;
    const topK = s.req.logprobs ?? 0;
    const entries: WireLogprob[] = [];
    for (let i = 0; i < r.tokens.length; i++) {
      const pos = s.prefilled + i;
      const prev = pos === 0 ? null : i === 0 ? s.promptLp! : logSoftmax(logitsAt(i - 1));
      entries.push(prev ? { id: prompt[pos], logprob: prev[prompt[pos]], top: topN(prev, topK) } : { id: prompt[pos], logprob: null, top: [] });
    }
    s.promptLp = logSoftmax(logitsAt(r.tokens.length - 1));
    this.send({ type: 'prompt_logprobs', id: s.id, entries });
  }
}

/** The message a finished sequence ends with: its counts, timing and speculation statistics. */
export function doneMessage(s: Sequence, reason: FinishReason, kvPeakBytes: number): FromWorker {
  const st = s.stats;
  return {
    type: 'done',
    id: s.id,
    finishReason: reason,
    promptTokens: s.req.promptIds.length,
    completionTokens: s.generated,
    kvPeakBytes,
    timing: { decodeSteps: st.decodeSteps, draftMs: st.draftMs, forwardMs: st.forwardMs, verifiedTokens: st.verifiedTokens },
    spec:
      s.req.drafter !== 'none'
        ? {
            drafter: s.req.drafter, draftSteps: st.draftSteps, draftTokens: st.draftTokens, acceptedTokens: st.acceptedTokens,
            earlyStops: st.earlyStops, fallback: st.fallback,
            lossy: s.relax ? { policy: 'lantern', k: s.req.lanternK, delta: s.req.lanternDelta, relaxedSteps: st.relaxedSteps } : undefined,
          }
        : undefined,
  };
}
