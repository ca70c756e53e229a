// LANTERN relaxed acceptance (docs/methods.md §6) — LOSSY by construction, opt-in only.
//
// For a draft token x with target distribution p, walk x's neighbours n_1, n_2, ... (at most k) and
// take the longest prefix whose target mass m = Σ p(n_i) stays ≤ δ; the relaxed distribution p̃
// moves that mass onto x (p̃(x) = p(x) + m, p̃(n_i) = 0). TV(p, p̃) = m ≤ δ, so each emitted token
// is drawn from a distribution within total variation δ of the target's (over n tokens the
// sequence-level distance can grow up to 1 − (1 − δ)^n ≤ nδ).
//
// Neighbours are not raw embedding neighbours: text tokens near each other in embedding space are
// often different values (digits, identifiers). They come from a whitelist built with the model
// (lantern/neighbours.json): tokens that decode to the same text up to case and surrounding
// whitespace, never digits, ordered by embedding distance.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface LanternParams {
  k: number;
  delta: number;
}

export class LanternNeighbours {
  private constructor(private readonly map: Map<number, number[]>) {}

  static load(modelDir: string): LanternNeighbours | null {
    const file = path.join(modelDir, 'lantern', 'neighbours.json');
    if (!existsSync(file)) return null;
    const raw = JSON.parse(readFileSync(file, 'utf8')).neighbours as Record<string, number[]>;
    return new LanternNeighbours(new Map(Object.entries(raw).map(([t, n]) => [Number(t), n])));
  }

  get(token: number): readonly number[] {
    return this.map.get(token) ?? [];
  }
}

/** p̃ for draft token x, and the mass m it absorbed (0 = p̃ is p). */
export function relax(p: Float64Array, x: number, neighbours: readonly number[], params: LanternParams): { p: Float64Array; absorbed: number } {
  let m = 0;
  const take: number[] = [];
  for (const n of neighbours.slice(0, params.k)) {
    if (m + p[n] > params.delta) break;
    m += p[n];
    take.push(n);
  }
  if (m === 0) return { p, absorbed: 0 };
  const out = Float64Array.from(p);
  out[x] += m;
  for (const n of take) out[n] = 0;
  return { p: out, absorbed: m };
}
