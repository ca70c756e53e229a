// Prometheus metrics, defined once. The registry is exposed (`metrics.registry`, also
// `app.specserve.metrics`) so the engine can register its own metrics beside these.
// Speculation metrics follow vLLM's spec_decode names; their quantities (drafts, accepted tokens,
// acceptance rate, mean acceptance length) are defined once in src/engine/stats.ts.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineLoad, SpeculationStats, TextEvent } from '../engine/types.ts';

const PREFIX = 'specserve_';

const REQUEST_DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160];
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40];
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5];

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(registry: Registry, getLoad: () => EngineLoad | undefined) {
  const registers = [registry];
  const requestsTotal = new Counter({
    name: `${PREFIX}requests_total`,
    help: 'HTTP requests by route template and status (499 = client closed before the response finished)',
    labelNames: ['route', 'status'] as const,
    registers,
  });
  const requestDuration = new Histogram({
    name: `${PREFIX}request_duration_seconds`,
    help: 'HTTP request duration, from arrival to the last byte (streams included)',
    labelNames: ['route'] as const,
    buckets: REQUEST_DURATION_BUCKETS,
    registers,
  });
  const timeToFirstToken = new Histogram({
    name: `${PREFIX}time_to_first_token_seconds`,
    help: 'Time from request arrival to the first generated text of any choice',
    buckets: TTFT_BUCKETS,
    registers,
  });
  const interTokenLatency = new Histogram({
    name: `${PREFIX}inter_token_latency_seconds`,
    help: 'Gap between successive text events of one choice, divided by the tokens the later event carries',
    buckets: ITL_BUCKETS,
    registers,
  });
  const generationTokens = new Counter({ name: `${PREFIX}generation_tokens_total`, help: 'Generated tokens', registers });
  const promptTokens = new Counter({
    name: `${PREFIX}prompt_tokens_total`,
    help: 'Prompt tokens (counted once per prompt, not per choice)',
    registers,
  });
  new Gauge({
    name: `${PREFIX}requests_running`,
    help: 'Sequences in the running batch (engine)',
    registers,
    collect() {
      this.set(getLoad()?.running ?? 0);
    },
  });
  new Gauge({
    name: `${PREFIX}requests_waiting`,
    help: 'Sequences queued behind the running batch (engine)',
    registers,
    collect() {
      this.set(getLoad()?.waiting ?? 0);
    },
  });
  /** A counter labelled by drafter ('none' = plain decoding). */
  const byDrafter = (name: string, help: string) => new Counter({ name: `${PREFIX}${name}`, help, labelNames: ['drafter'] as const, registers });
  const specDrafts = byDrafter('spec_decode_num_drafts_total', 'Verification steps that checked at least one draft token');
  const specDraftTokens = byDrafter('spec_decode_num_draft_tokens_total', 'Draft tokens verified');
  const specAcceptedTokens = byDrafter('spec_decode_num_accepted_tokens_total', 'Draft tokens accepted (bonus tokens not included)');
  // where decode time goes: divide by decode steps for ms per step
  const decodeSteps = byDrafter(
    'decode_steps_total',
    'Target forwards finished requests took part in after prefill (a forward decoding several sequences counts once for each)',
  );
  const decodeDraftSeconds = byDrafter(
    'decode_draft_seconds_total',
    "Time finished requests' decode steps spent drafting (a batch's drafting shared equally by its sequences)",
  );
  const decodeForwardSeconds = byDrafter(
    'decode_forward_seconds_total',
    "Time finished requests' decode steps spent in the target forward verifying root and draft tokens (shared equally within a batch)",
  );

  return {
    registry,
    requestsTotal,
    requestDuration,

    /** Records one finished HTTP request. */
    observeRequest(route: string, status: number, seconds: number) {
      requestsTotal.inc({ route, status: String(status) });
      requestDuration.observe({ route }, seconds);
    },

    /** Timing for one generation request (all its choices); `startedAt` is performance.now() at arrival. */
    startGeneration(startedAt: number) {
      let firstTokenSeen = false;
      return {
        /** Timing for one choice. */
        choice() {
          let lastEventAt: number | undefined;
          return {
            text(event: Extract<TextEvent, { type: 'text' }>) {
              const now = performance.now();
              const tokens = event.tokenIds.length;
              if (tokens === 0) return;
              if (!firstTokenSeen) {
                firstTokenSeen = true;
                timeToFirstToken.observe((now - startedAt) / 1000);
              }
              if (lastEventAt !== undefined) {
                const perToken = (now - lastEventAt) / 1000 / tokens;
                for (let i = 0; i < tokens; i++) interTokenLatency.observe(perToken);
              }
              lastEventAt = now;
            },
            done(event: Extract<TextEvent, { type: 'done' }>) {
              generationTokens.inc(event.completionTokens);
              if (event.speculation) observeSpeculation(event.speculation);
              if (event.timing) {
                const labels = { drafter: event.speculation?.drafter ?? 'none' };
                decodeSteps.inc(labels, event.timing.decodeSteps);
                decodeDraftSeconds.inc(labels, event.timing.draftMs / 1000);
                decodeForwardSeconds.inc(labels, event.timing.forwardMs / 1000);
              }
            },
          };
        },
        prompt(tokens: number) {
          promptTokens.inc(tokens);
        },
      };
    },
  };

  function observeSpeculation(stats: SpeculationStats) {
    const labels = { drafter: stats.drafter };
    specDrafts.inc(labels, stats.draftSteps);
    specDraftTokens.inc(labels, stats.draftTokens);
    specAcceptedTokens.inc(labels, stats.acceptedTokens);
  }
}

export type GenerationTimer = ReturnType<Metrics['startGeneration']>;
export type ChoiceTimer = ReturnType<GenerationTimer['choice']>;
