// Smooth streaming. With speculation one step can make several tokens at once, then nothing until
// the next step: a chat client sees a burst and a pause. Smooth pacing is a small playout buffer:
// tokens leave one average token interval apart (measured: time between steps over the tokens they
// brought), so a step that brought six is spread out and one that brought a single token does not
// leave a gap twice as long. Nothing waits more than one step interval: when the buffer holds more
// than that interval can space out, the spacing shrinks to fit it; and the buffer is emptied at
// once when the request ends, fails or is cancelled.

import { textEvent } from '../model/text.ts';
import type { TextEvent, TextPart } from '../engine/types.ts';
import type { TextChunk } from './format.ts';

export const STREAM_PACINGS = ['off', 'smooth'] as const;
export type StreamPacing = (typeof STREAM_PACINGS)[number];

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

/** A pull made ahead, and whether it has settled yet. */
interface Pull {
  event: Promise<TextEvent | undefined>;
  settled: Promise<void>;
  done: boolean;
}

/**
 * Re-times one choice's events. `next` is the choice's own pull (undefined at the end); it is
 * called one event ahead, so the next step is seen the moment it arrives.
 */
export async function* paceSmoothly(next: () => Promise<TextEvent | undefined>, clock = () => performance.now()): AsyncGenerator<TextEvent> {
  const pull = (): Pull => {
    const event = next();
    const p: Pull = { event, settled: Promise.resolve(), done: false };
    // the pull may fail after the consumer stopped listening: that is not an unhandled rejection
    p.settled = event.then(
      () => void (p.done = true),
      () => void (p.done = true),
    );
    return p;
  };
  const held: TextChunk[] = [];
  /** Running estimates: time between steps, and between tokens. */
  let interval: number | undefined;
  let tokenGap = 0;
  let lastArrival: number | undefined;
  let lastSent = -Infinity;
  /** When the first held piece is due, and the spacing of the rest. */
  let due = 0;
  let gap = 0;
  let ahead = pull();
  for (;;) {
    if (held.length > 0 && !ahead.done) {
      const wait = due - clock();
      if (wait > 0) await Promise.race([sleep(wait), ahead.settled]);
      if (!ahead.done) {
        // timers fire a millisecond apart at best: everything due by now leaves together
        const now = clock();
        const batch: TextChunk[] = [];
        while (held.length > 0 && due <= now) {
          batch.push(held.shift()!);
          due += gap;
        }
        if (batch.length > 0) {
          lastSent = now;
          yield joinEvents(batch);
        }
        continue;
      }
    }
    const event = await ahead.event;
    if (event === undefined || event.type === 'done') {
      if (held.length > 0) yield joinEvents(held.splice(0));
      if (event) yield event;
      return;
    }
    ahead = pull();
    const now = clock();
    const pieces = splitByToken(event);
    if (lastArrival !== undefined) {
      const dt = now - lastArrival;
      const perToken = dt / pieces.length;
      if (interval === undefined) [interval, tokenGap] = [dt, perToken];
      else {
        interval += INTERVAL_SMOOTHING * (dt - interval);
        tokenGap += INTERVAL_SMOOTHING * (perToken - tokenGap);
      }
    }
    lastArrival = now;
    held.push(...pieces);
    if (interval === undefined) {
      lastSent = now;
      yield joinEvents(held.splice(0)); // no interval measured yet: nothing to spread over
      continue;
    }
    gap = Math.min(tokenGap, interval / held.length);
    due = Math.max(now, lastSent + gap);
  }
}
