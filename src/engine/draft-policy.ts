// How many draft tokens a step may verify per sequence, chosen from measured goodput.
//
// Whether speculation pays depends on things the scheduler cannot know in advance: how well the
// drafters predict this traffic, what drafting costs, and how the forward's cost grows with the
// tokens it verifies (nearly free while a step is bound by reading weights, full price once it is
// bound by compute, which on a CPU happens at a few dozen tokens). So it measures. For each drafter
// (or 'mixed', for batches whose sequences use different drafters) and batch size class (1, 2-3,
// 4-7, 8-15, 16-31, 32+) it keeps the rate at which decode steps emitted
// tokens (tokens per millisecond, drafting and verification included) under each cap on the
// per-sequence draft budget, 0 (plain decoding) to 8, and uses the best. One step in EXPLORE_EVERY
// tries another cap (least tried first), so the estimates follow the traffic as it changes; caps
// never tried are tried first. The per-sequence budget (from that sequence's own acceptance) still
// applies under the cap: the policy only limits, so a sequence the drafter cannot predict is not
// made to draft.
//
// Greedy and sampled outputs do not depend on the cap (verification is lossless), only speed does.

/** Caps tried, per sequence and step. */
export const DRAFT_CAPS = [0, 1, 2, 4, 8] as const;
/** One decode step in this many tries a cap other than the best. Defaults to `32`. */
export const EXPLORE_EVERY = 32;
/** How fast old measurements fade: each new step multiplies a cap's sums by 1 - DECAY. Defaults
 *  to `0.05` (about the last 20 steps under that cap count most). */
const DECAY = 0.05;
/** Caps measuring under this fraction of the best cap's rate are re-measured less often. */
const CLOSE = 0.6;
/** ...only on every FAR_EVERY-th exploration step. */
const FAR_EVERY = 4;
/** ...once they have this many measurements: a few unlucky steps (a stretch of text the drafter
 *  cannot predict) must not starve a cap of the measurements that would show it is the best. */
const SETTLED = 16;

export interface DraftCapSnapshot {
  drafter: string;
  batchClass: string;
  cap: number;
  tokensPerMs: number;
}

interface Arm {
  tries: number;
  /** Decayed sums of tokens emitted and milliseconds spent under this cap: the rate is their
   *  ratio, not a mean of per-step ratios, which one lucky or unlucky step would swing. */
  tokens: number;
  ms: number;
  rate: number; // tokens per ms
}

export class DraftCapPolicy {
  private readonly arms = new Map<string, Arm[]>();
  private steps = new Map<string, number>();

  constructor(private readonly caps: readonly number[] = DRAFT_CAPS) {}

  /** Batch size class: 0 for 1 sequence, then one class per doubling, the last from 32 up. */
  static classOf(batch: number): number {
    return Math.min(5, Math.floor(Math.log2(Math.max(1, batch))));
  }

  private armsFor(key: string): Arm[] {
    let a = this.arms.get(key);
    if (!a) {
      a = this.caps.map(() => ({ tries: 0, tokens: 0, ms: 0, rate: 0 }));
      this.arms.set(key, a);
    }
    return a;
  }

  private static key(drafter: string, batch: number): string {
    return `${drafter}|${DraftCapPolicy.classOf(batch)}`;
  }

  /** The cap for a decode step over `batch` sequences drafting with `drafter`, and its index for
   *  `record`. */
  choose(batch: number, drafter = 'mixed'): { cap: number; arm: number } {
    const key = DraftCapPolicy.key(drafter, batch);
    const arms = this.armsFor(key);
    const step = (this.steps.get(key) ?? 0) + 1;
    this.steps.set(key, step);
    const untried = arms.findIndex((a) => a.tries === 0);
    let arm: number;
    if (untried >= 0) arm = untried;
    else if (step % EXPLORE_EVERY === 0) {
      // re-measure the least-tried contender; caps far behind the best (under CLOSE of its rate)
      // only every FAR_EVERY-th time, so a clear winner is not taxed by measuring clear losers
      const best = this.best(arms);
      const far = (step / EXPLORE_EVERY) % FAR_EVERY !== 0;
      arm = arms.reduce(
        (m, a, i) =>
          i !== best && (!far || a.tries < SETTLED || a.rate >= CLOSE * arms[best].rate) && (m < 0 || a.tries < arms[m].tries) ? i : m,
        -1,
      );
      if (arm < 0) arm = best;
    } else arm = this.best(arms);
    return { cap: this.caps[arm], arm };
  }

  /** A decode step under `arm` emitted `tokens` in `ms` (drafting + forward + verification). */
  record(batch: number, arm: number, tokens: number, ms: number, drafter = 'mixed'): void {
    if (ms <= 0) return;
    const a = this.armsFor(DraftCapPolicy.key(drafter, batch))[arm];
    a.tokens = a.tokens * (1 - DECAY) + tokens;
    a.ms = a.ms * (1 - DECAY) + ms;
    a.rate = a.tokens / a.ms;
    a.tries++;
  }

  private best(arms: Arm[]): number {
    let b = 0;
    for (let i = 1; i < arms.length; i++) if (arms[i].rate > arms[b].rate) b = i;
    return b;
  }

  /** Current best cap per batch size class that has been measured (for metrics). */
  snapshot(): DraftCapSnapshot[] {
    const names = ['1', '2-3', '4-7', '8-15', '16-31', '32+'];
    return [...this.arms.entries()]
      .filter(([, arms]) => arms.some((a) => a.tries > 0))
      .map(([key, arms]) => {
        const [drafter, cls] = key.split('|');
        const b = this.best(arms);
        return { drafter, batchClass: names[Number(cls)], cap: this.caps[b], tokensPerMs: arms[b].rate };
      });
  }
}
