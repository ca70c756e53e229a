// Reading the head-major dense past the KV cache writes for the ONNX graphs back as token rows.

/** Batch row `row` of a head-major past [batch, kvHeads, past, headDim] as token-major
 *  [past, kvHeads * headDim]. */
export function tokenMajor(buf: Float32Array, kvHeads: number, past: number, headDim: number, row = 0): Float32Array<ArrayBuffer> {
  const W = kvHeads * headDim;
  const out = new Float32Array(past * W);
  for (let h = 0; h < kvHeads; h++)
    for (let t = 0; t < past; t++)
      for (let d = 0; d < headDim; d++) out[t * W + h * headDim + d] = buf[((row * kvHeads + h) * past + t) * headDim + d];
  return out;
}
