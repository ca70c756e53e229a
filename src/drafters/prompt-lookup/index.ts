// Prompt lookup decoding (PLD): find the latest earlier occurrence of the sequence's last n tokens
// (n from `maxNgram` down to `minNgram`) and propose what followed it as a chain. Stateless; pays
// off on copy-heavy requests (rewrite, summarise, code edits), costs nothing when nothing matches.
import { chain, type DraftContext, type Drafter, type DraftTree } from '../Drafter.ts';

/** Longest n-gram tried. Defaults to `3` (Spec-Bench's draft_matching_window_size). */
export const PLD_MAX_NGRAM = 3;
/** Shortest n-gram tried. Defaults to `1`. */
export const PLD_MIN_NGRAM = 1;
/** Most tokens proposed. Defaults to `10` (Spec-Bench's draft_num_candidate_tokens). */
export const PLD_MAX_TOKENS = 10;

export function lookup(tokens: readonly number[], maxTokens: number, maxNgram = PLD_MAX_NGRAM, minNgram = PLD_MIN_NGRAM): number[] {
  const n = tokens.length;
  for (let g = Math.min(maxNgram, n - 1); g >= minNgram; g--) {
    // the most recent match with a full continuation; in a repetition the latest match is right
    // before the suffix and can continue only a token or two, so keep the longest seen
    let best = -1;
    let bestLen = 0;
    for (let start = n - g - 1; start >= 0; start--) {
      let ok = true;
      for (let j = 0; j < g; j++) {
        if (tokens[start + j] !== tokens[n - g + j]) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      const len = Math.min(maxTokens, n - (start + g));
      if (len > bestLen) {
        best = start + g;
        bestLen = len;
        if (len === maxTokens) break;
      }
    }
    if (bestLen > 0) return tokens.slice(best, best + bestLen) as number[];
  }
  return [];
}

export class PromptLookupDrafter implements Drafter {
  readonly name = 'prompt-lookup';
  readonly needs = { hidden: false, treeMask: false } as const;

  propose(batch: readonly DraftContext[]): (DraftTree | null)[] {
    return batch.map((ctx) => {
      const found = lookup(ctx.tokens, Math.min(PLD_MAX_TOKENS, ctx.maxNodes));
      return found.length ? chain(found) : null;
    });
  }

  release(): void {}
}
