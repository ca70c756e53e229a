// Counting a load test run's tokens inside a time window, so that the aggregate rate describes the
// steady state (every client busy) and not the ramp-up or a tail of stragglers.

/** One streamed request: how many tokens it streamed, and when its first and last text chunks
 *  arrived (performance.now() milliseconds). */
export interface StreamSpan {
  tokens: number;
  firstAt: number;
  lastAt: number;
}

/** Tokens a request streamed inside [from, to), its tokens spread evenly between its first and
 *  last chunk (a request that streamed everything at once counts where that chunk landed). */
export function tokensWithin(s: StreamSpan, from: number, to: number): number {
  if (s.lastAt <= s.firstAt) return s.firstAt >= from && s.firstAt < to ? s.tokens : 0;
  const overlap = Math.max(0, Math.min(to, s.lastAt) - Math.max(from, s.firstAt));
  return (s.tokens * overlap) / (s.lastAt - s.firstAt);
}
