// Chi-square goodness of fit for the distribution tests.

/** Upper critical value of chi-square with k degrees of freedom at tail probability alpha
 *  (Wilson–Hilferty approximation; accurate to a few percent for k >= 3). */
export function chiSquareCritical(k: number, alpha = 1e-3): number {
  const z = normalQuantile(1 - alpha);
  const a = 2 / (9 * k);
  return k * Math.pow(1 - a + z * Math.sqrt(a), 3);
}

function normalQuantile(p: number): number {
  // Acklam's rational approximation
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const q = Math.min(p, 1 - p);
  let x: number;
  if (q < 0.02425) {
    const r = Math.sqrt(-2 * Math.log(q));
    x = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1);
  } else {
    const r = q - 0.5;
    const s = r * r;
    x = ((((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r) / (((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1);
    return p < 0.5 ? x : -x;
  }
  return p < 0.5 ? x : -x;
}

/** Chi-square statistic of observed counts against expected probabilities; categories with tiny
 *  expectations are pooled so the approximation holds. Returns [statistic, degrees of freedom]. */
export function chiSquare(observed: Map<string, number>, expected: Map<string, number>, total: number): [number, number] {
  let stat = 0;
  let df = -1;
  let poolO = 0;
  let poolE = 0;
  for (const [k, p] of expected) {
    const e = p * total;
    const o = observed.get(k) ?? 0;
    if (e < 5) {
      poolO += o;
      poolE += e;
      continue;
    }
    stat += ((o - e) * (o - e)) / e;
    df++;
  }
  for (const [k, o] of observed) if (!expected.has(k) || (expected.get(k) ?? 0) === 0) poolO += o;
  if (poolE > 0 || poolO > 0) {
    stat += ((poolO - poolE) * (poolO - poolE)) / Math.max(poolE, 1e-9);
    df++;
  }
  return [stat, Math.max(df, 1)];
}
