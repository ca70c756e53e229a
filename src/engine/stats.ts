// Speculation statistics, defined once (vLLM's definitions) for responses, metrics, benchmarks and
// the README alike. Per request, the worker counts (SpeculationCounts in types.ts):
//   draft step       a decode step that verified at least one draft token
//   draft tokens     draft tokens verified in draft steps
//   accepted tokens  draft tokens the target kept (root and bonus token excluded)
// and from those:
//   acceptance rate         = accepted tokens / draft tokens
//   mean acceptance length  = 1 + accepted tokens / draft steps
//                             (tokens per verified draft step, the bonus token included; 1 = no gain)
// Steps on which a sequence did not draft (paused, or a cap of 0) count in neither.

export function meanAcceptanceLength(c: { acceptedTokens: number; draftSteps: number }): number {
  return c.draftSteps > 0 ? 1 + c.acceptedTokens / c.draftSteps : 1;
}

export function acceptanceRate(c: { acceptedTokens: number; draftTokens: number }): number {
  return c.draftTokens > 0 ? c.acceptedTokens / c.draftTokens : 0;
}
