// How many draft tokens a step may verify per sequence, chosen from measured goodput.
//
// Whether speculation pays depends on things the scheduler cannot know in advance: how well the
// drafters predict this traffic, what drafting costs, and how the forward's cost grows with the
// tokens it verifies (nearly free while a step is bound by reading weights, full price once it is
// bound by compute, which on a CPU happens at a few dozen tokens). So it measures. For each drafter
// (or 'mixed', for batches whose sequences use different drafters) and batch size class (1, 2-3,
// 4-7, 8-15, 16-31, 32+) it estimates the rate at which decode steps would emit tokens (tokens per
// millisecond, drafting and verification included) under each cap on the per-sequence draft
// budget, 0 (plain decoding) to 8, and uses the best. The per-sequence budget (from that
// sequence's own acceptance) still applies under the cap: the policy only limits, so a sequence
// the drafter cannot predict is not made to draft.
//
// Comparing caps on the same text. What a step emits depends far more on the text (a stretch
// prompt lookup can copy, or one it cannot) than on the cap, so rates measured each on the steps
// that happened to run under that cap compare texts, not caps: a cap measured in a bad stretch
// looked worse than one measured in a good one. But a step run under cap u also tells what every
// smaller cap would have done on the same text: trees are cut to a cap by prefix (node order), so
// a smaller cap's accepted path is the part of the accepted path whose nodes fall under it. The
// scheduler reports, per step, the tokens each cap up to u would have emitted, and the policy
// chains the differences between neighbouring caps measured on the same steps: tokens under cap c
// = tokens under cap c-1 + (the mean extra tokens c gave over c-1 on steps run at c or above).
// A step's cost is measured directly, as the mean ms of the steps run under each cap (over a batch,
// or over many steps, it depends far less on the text than tokens do). One step in EXPLORE_EVERY
// runs a cap other than the best (least tried first; caps never tried first), so larger caps than
// the best keep being measured and the estimates follow the traffic.
//
// Greedy and sampled outputs do not depend on the cap (verification is lossless), only speed does.

/** Caps tried, per sequence and step. */
export const DRAFT_CAPS = [0, 1, 2, 4, 8] as const;
/** One decode step in this many tries a cap other than the best. Defaults to `32`. */
export const EXPLORE_EVERY = 32;
/** How fast old measurements fade: every step of a (drafter, batch class) multiplies its sums by
 *  1 - DECAY. Defaults to `0.01` (about the last 100 steps count most). */
const DECAY = 0.01;
/** Caps estimated under this fraction of the best cap's rate are re-measured less often... */
const CLOSE = 0.6;
/** ...only on every FAR_EVERY-th exploration step... */
const FAR_EVERY = 4;
/** ...once they have run this many steps: a few unlucky steps must not starve a cap of the
 *  measurements that would show it is the best. */
const SETTLED = 16;

export interface DraftCapSnapshot {
  drafter: string;
  batchClass: string;
  cap: number;
  tokensPerMs: number;
}

/** What one decode step did, and what the caps up to the one it ran under would have done on it. */
export interface StepOutcome {
  ms: number;
  /** Per cap index 0..arm: tokens the step's decode rows emitted / would have emitted. */
  tokens: number[];
}

/** Decayed sums for one (drafter, batch class). */
class Stats {
  readonly tries: number[];
  /** Per cap c: weight of steps run at c or above, and the sum over them of tokens(c) -
   *  tokens(c-1) (for c = 0: tokens(0)). */
  readonly w: number[];
  readonly dTok: number[];
  /** Per cap: weight and ms of the steps run under it (cost is measured directly: averaged over a
   *  batch or over the arm's steps it depends far less on the text than tokens do). */
  readonly msW: number[];
  readonly ms: number[];
  steps = 0;

  constructor(k: number) {
    this.tries = new Array(k).fill(0);
    this.w = new Array(k).fill(0);
    this.dTok = new Array(k).fill(0);
    this.msW = new Array(k).fill(0);
    this.ms = new Array(k).fill(0);
  }

  record(arm: number, o: StepOutcome): void {
    const keep = 1 - DECAY;
    for (let c = 0; c < this.w.length; c++) {
      this.w[c] *= keep;
      this.dTok[c] *= keep;
      this.msW[c] *= keep;
      this.ms[c] *= keep;
    }
    for (let c = 0; c <= arm && c < o.tokens.length; c++) {
      this.w[c] += 1;
      this.dTok[c] += o.tokens[c] - (c > 0 ? o.tokens[c - 1] : 0);
    }
    this.msW[arm] += 1;
    this.ms[arm] += o.ms;
    this.tries[arm]++;
  }

  /** Estimated tokens/ms per cap (0 where nothing is known yet). */
  rates(): number[] {
    const k = this.w.length;
    const out = new Array(k).fill(0);
    let tokens = 0;
    for (let c = 0; c < k; c++) {
      if (this.w[c] <= 1e-9) break; // nothing known at c, so nothing above it either
      tokens += this.dTok[c] / this.w[c];
      out[c] = this.msW[c] > 1e-9 && this.ms[c] > 0 ? tokens / (this.ms[c] / this.msW[c]) : 0;
    }
    return out;
  }
}

export class DraftCapPolicy {
  private readonly stats = new Map<string, Stats>();

  /** Caps tried, by arm index. */
  constructor(readonly caps: readonly number[] = DRAFT_CAPS) {}

  /** Batch size class: 0 for 1 sequence, then one class per doubling, the last from 32 up. */
  static classOf(batch: number): number {
    return Math.min(5, Math.floor(Math.log2(Math.max(1, batch))));
  }

  private statsFor(key: string): Stats {
    let s = this.stats.get(key);
    if (!s) {
      s = new Stats(this.caps.length);
      this.stats.set(key, s);
    }
    return s;
  }

  private static key(drafter: string, batch: number): string {
    return `${drafter}|${DraftCapPolicy.classOf(batch)}`;
  }

  /** The cap for a decode step over `batch` sequences drafting with `drafter`, and its index for
   *  `record`. */
  choose(batch: number, drafter = 'mixed'): { cap: number; arm: number } {
    const s = this.statsFor(DraftCapPolicy.key(drafter, batch));
    s.steps++;
    const untried = s.tries.findIndex((t) => t === 0);
    let arm: number;
    if (untried >= 0) arm = untried;
    else {
      const rates = s.rates();
      const best = argmax(rates);
      if (s.steps % EXPLORE_EVERY === 0) {
        // re-measure the least-tried contender; caps far behind the best (under CLOSE of its rate)
        // only every FAR_EVERY-th time, so a clear winner is not taxed by measuring clear losers
        const far = (s.steps / EXPLORE_EVERY) % FAR_EVERY !== 0;
        arm = s.tries.reduce(
          (m, t, i) => (i !== best && (!far || t < SETTLED || rates[i] >= CLOSE * rates[best]) && (m < 0 || t < s.tries[m]) ? i : m),
          -1,
        );
        if (arm < 0) arm = best;
      } else arm = best;
    }
    return { cap: this.caps[arm], arm };
  }

  /** A decode step ran under `arm`: what it emitted and cost, and what smaller caps would have. */
  record(batch: number, arm: number, outcome: StepOutcome, drafter = 'mixed'): void {
    if (outcome.ms <= 0) return;
    this.statsFor(DraftCapPolicy.key(drafter, batch)).record(arm, outcome);
  }

  /** Current best cap per batch size class that has been measured (for metrics). */
  snapshot(): DraftCapSnapshot[] {
    const names = ['1', '2-3', '4-7', '8-15', '16-31', '32+'];
    return [...this.stats.entries()]
      .filter(([, s]) => s.tries.some((t) => t > 0))
      .map(([key, s]) => {
        const [drafter, cls] = key.split('|');
        const rates = s.rates();
        const b = argmax(rates);
        return { drafter, batchClass: names[Number(cls)], cap: this.caps[b], tokensPerMs: rates[b] };
      });
  }
}

function argmax(xs: number[]): number {
  let b = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[b]) b = i;
  return b;
}
