// Conventions of the ONNX graphs' inputs that both the engine and the drafters' own graphs follow
// (models/tooling/graph.py writes them).

/** Additive attention bias of a blocked position. Not -Infinity: a fully masked (padding) row
 *  must give no NaN. */
export const NEG_BIAS = -1e9;

/** Copies `n` token-major rows ([n, kvHeads * headDim], as the graphs output new K/V) at src[at]
 *  to positions pos.. of each head of a head-major past ([kvHeads, past, headDim], as the graphs
 *  take it) whose batch row starts at out[base]. */
export function copyToHeadMajor(src: Float32Array, at: number, n: number, out: Float32Array, base: number, past: number, pos: number, kvHeads: number, headDim: number): void {
  const W = kvHeads * headDim;
  for (let h = 0; h < kvHeads; h++) {
    let o = base + (h * past + pos) * headDim;
    let i = at + h * headDim;
    for (let r = 0; r < n; r++, o += headDim, i += W) out.set(src.subarray(i, i + headDim), o);
  }
}

/** `n` token-major rows as a head-major past of exactly `n` rows (tools and tests). */
export function headMajor(rows: Float32Array, n: number, kvHeads: number, headDim: number): Float32Array {
  const out = new Float32Array(n * kvHeads * headDim);
  copyToHeadMajor(rows, 0, n, out, 0, n, 0, kvHeads, headDim);
  return out;
}
