// Stop strings, checked in the worker as tokens are emitted, so no step runs past a stop and the
// sequence's KV is freed in the step that completed it. The main thread's TokenTextStream trims
// the text with the same Detokenizer and StopMatcher over the same ids, so both sides agree on the
// token that completed the stop string.
import { Detokenizer, StopMatcher, type TextCodec } from '../model/text.ts';
import type { SeqRequest } from './protocol.ts';

export interface StopCheck {
  /** The next emitted token; true once a stop string is complete. */
  push(tokenId: number): boolean;
}

/** A stop check per request that has stop strings (null for the rest). */
export type StopChecks = (req: SeqRequest) => StopCheck | null;

export function stopStrings(codec: TextCodec): StopChecks {
  return (req) => {
    if (req.stop.length === 0) return null;
    const detok = new Detokenizer(codec, req.promptIds);
    const matcher = new StopMatcher(req.stop);
    return {
      push(tokenId) {
        matcher.push(detok.push(tokenId));
        return matcher.stopped;
      },
    };
  };
}
