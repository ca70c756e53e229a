// Smooth streaming. With speculation one step can make several tokens at once, then nothing until
// the next step: a chat client sees a burst and a pause. Smooth pacing spreads a step's tokens over
// the interval measured between steps, so they arrive at an even cadence. It only ever delays a
// token within the current step's interval: when the next step's tokens (or the end) arrive,
// whatever is still held goes out at once, so the final token is never later than one step
// interval and nothing is held back when the request ends.

import { textEvent } from '../engine/text.ts';
import type { TextEvent, TextPart } from '../engine/types.ts';

export const STREAM_PACINGS = ['off', 'smooth'] as const;
export type StreamPacing = (typeof STREAM_PACINGS)[number];

type TextChunk = Extract<TextEvent, { type: 'text' }>;

/** Weight of the newest interval in the running estimate of the step interval. */
const INTERVAL_SMOOTHING = 0.3;

/**
 * One event per token that adds text (a token whose text is still held back, say half a character,
 * rides with the next one). Returns the event itself when there is nothing to split.
 */
export function splitByToken(event: TextChunk): TextChunk[] {
  const parts = event.parts;
  if (!parts || parts.filter((p) => p.text !== '').length < 2) return [event];
  const groups: TextPart[][] = [];
  let open: TextPart[] = [];
  for (const part of parts) {
    open.push(part);
    if (part.text !== '') {
      groups.push(open);
      open = [];
    }
  }
  if (open.length) groups[groups.length - 1].push(...open);
  return groups.map((group) => textEvent(group, event.logprobs !== undefined));
}

function joinEvents(events: TextChunk[]): TextChunk {
  return textEvent(events.flatMap((e) => e.parts ?? []), events[0].logprobs !== undefined);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Re-times one choice's events. `next` is the choice's own pull (undefined at the end); it is
 * called one event ahead, so the arrival of the next step is seen while this one is being spread.
 */
export async function* paceSmoothly(next: () => Promise<TextEvent | undefined>, clock = () => performance.now()): AsyncGenerator<TextEvent> {
  let interval: number | undefined;
  let lastArrival: number | undefined;
  // a pull made ahead may fail after the consumer stopped listening: that is not unhandled
  const pull = () => {
    const p = next();
    p.catch(() => undefined);
    return p;
  };
  let pending = pull();
  for (;;) {
    const event = await pending;
    if (event === undefined) return;
    if (event.type === 'done') {
      yield event;
      return;
    }
    pending = pull();
    const now = clock();
    if (lastArrival !== undefined) {
      const dt = now - lastArrival;
      interval = interval === undefined ? dt : interval + INTERVAL_SMOOTHING * (dt - interval);
    }
    lastArrival = now;
    const pieces = splitByToken(event);
    if (pieces.length === 1 || interval === undefined) {
      yield event;
      continue;
    }
    const gap = interval / pieces.length;
    let arrived = false;
    const arrival = pending.then(
      () => void (arrived = true),
      () => void (arrived = true),
    );
    for (let i = 0; i < pieces.length; i++) {
      if (i > 0 && !arrived) await Promise.race([sleep(gap), arrival]);
      if (arrived) {
        yield joinEvents(pieces.slice(i));
        break;
      }
      yield pieces[i];
    }
  }
}
