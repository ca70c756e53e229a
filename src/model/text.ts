// Text side of the engine (main thread): tokenizer, chat template, streaming detokenization and
// stop strings.
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ApiError } from '../errors.ts';
import type { ChatMessage, TextEvent, TextPart, TokenSource } from '../engine/types.ts';

export class TextCodec {
  private readonly tok: Tokenizer;
  private readonly template: Template | null;
  private readonly specials: Record<string, string>;
  readonly specialIds: Set<number>;

  constructor(modelDir: string) {
    const tj = JSON.parse(readFileSync(path.join(modelDir, 'tokenizer.json'), 'utf8'));
    const tc = JSON.parse(readFileSync(path.join(modelDir, 'tokenizer_config.json'), 'utf8'));
    this.tok = new Tokenizer(tj, tc);
    this.template = typeof tc.chat_template === 'string' ? new Template(tc.chat_template) : null;
    // older tokenizer_config.json files hold special tokens as AddedToken objects
    const special = (t: unknown): string => (typeof t === 'string' ? t : ((t as { content?: string } | null)?.content ?? ''));
    this.specials = { bos_token: special(tc.bos_token), eos_token: special(tc.eos_token) };
    this.specialIds = new Set((tj.added_tokens ?? []).filter((t: any) => t.special).map((t: any) => t.id as number));
  }

  /** Token ids of a prompt, with the tokenizer's own special tokens (a Llama tokenizer's BOS) unless
   *  the text already starts with the BOS token, as a rendered chat template does: a second BOS
   *  would put the model off the text it was trained on. */
  encode(text: string): number[] {
    const bos = this.specials.bos_token;
    const hasBos = bos !== '' && text.startsWith(bos);
    return this.tok.encode(text, { add_special_tokens: !hasBos }).ids;
  }

  decode(ids: readonly number[], skipSpecial = true): string {
    if (ids.length === 0) return '';
    return this.tok.decode(ids as number[], { skip_special_tokens: skipSpecial });
  }

  /** Text of one token for logprobs (special tokens shown, partial bytes as the replacement char). */
  tokenText(id: number): string {
    return this.tok.decode([id], { skip_special_tokens: false });
  }

  applyChatTemplate(messages: ChatMessage[]): string {
    if (!this.template) {
      // no template: plain role-prefixed transcript
      return messages.map((m) => `${m.role}: ${m.content}\n`).join('') + 'assistant: ';
    }
    try {
      return this.template.render({ messages, add_generation_prompt: true, ...this.specials });
    } catch (err) {
      // the model's template rejects this conversation (e.g. roles that must alternate)
      throw new ApiError('invalid_request', `chat template: ${(err as Error).message}`, 'messages');
    }
  }
}

/**
 * Incremental detokenizer (the vLLM scheme): decode a short window of recent ids and emit only the
 * new, complete suffix, so a character split across tokens is never emitted half-way.
 */
export class Detokenizer {
  private ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly codec: TextCodec, context: readonly number[] = []) {
    // seed with a few context ids so leading-space handling matches the full decode
    this.ids = context.slice(-4);
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }

  push(id: number): string {
    this.ids.push(id);
    const prefix = this.codec.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.codec.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      const out = full.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return out;
    }
    return '';
  }

  /** Whatever is still held back (an incomplete character at the very end). */
  flush(): string {
    const prefix = this.codec.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.codec.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}

/**
 * Stop strings matched across token boundaries. Text that might be the start of a stop string is
 * held back until it is known not to be; a matched stop string and everything after it are dropped.
 */
export class StopMatcher {
  private held = '';
  stopped = false;
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    this.longest = Math.max(0, ...stops.map((s) => s.length));
  }

  /** Returns the text safe to emit now. */
  push(text: string): string {
    if (this.stopped) return '';
    if (this.stops.length === 0) return text;
    this.held += text;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.held.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.held.slice(0, cut);
      this.held = '';
      return out;
    }
    // keep the longest suffix that is a prefix of some stop string
    let keep = 0;
    for (let k = Math.min(this.longest - 1, this.held.length); k > 0; k--) {
      const tail = this.held.slice(this.held.length - k);
      if (this.stops.some((s) => s.startsWith(tail))) {
        keep = k;
        break;
      }
    }
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return out;
  }

  flush(): string {
    const out = this.stopped ? '' : this.held;
    this.held = '';
    return out;
  }
}

/** What a token's source is, before its text is known. */
export type TokenOrigin = Omit<TokenSource, 'text'>;

/**
 * Generated ids → final text, one token at a time: detokenizes, holds back what might start a stop
 * string, and keeps, for every character it releases, the token that produced it. A step emits
 * several tokens at once with speculation; they are pushed one by one, so a character split across
 * tokens, or across steps, comes out once and whole.
 */
export class TokenTextStream {
  readonly #detok: Detokenizer;
  readonly #stop: StopMatcher;
  /** Text produced but not yet released, oldest first; it is exactly what the stop matcher holds. */
  #pending: TokenSource[] = [];
  #last: TokenOrigin | undefined;

  constructor(codec: TextCodec, promptIds: readonly number[], stops: readonly string[]) {
    this.#detok = new Detokenizer(codec, promptIds);
    this.#stop = new StopMatcher(stops);
  }

  /** True once a stop string matched: nothing more is released. */
  get stopped(): boolean {
    return this.#stop.stopped;
  }

  push(id: number, origin: TokenOrigin): { text: string; sources: TokenSource[] } {
    this.#last = origin;
    const piece = this.#detok.push(id);
    if (piece) this.#pending.push({ ...origin, text: piece });
    return this.#release(this.#stop.push(piece));
  }

  /** At the end: a character left incomplete, and text held for a stop string that never came. */
  flush(): { text: string; sources: TokenSource[] } {
    const tail = this.#detok.flush();
    if (tail && this.#last) this.#pending.push({ ...this.#last, text: tail });
    return this.#release(this.#stop.push(tail) + this.#stop.flush());
  }

  #release(text: string): { text: string; sources: TokenSource[] } {
    const sources: TokenSource[] = [];
    let need = text.length;
    while (need > 0) {
      const head = this.#pending[0];
      if (head.text.length <= need) {
        sources.push(this.#pending.shift()!);
        need -= head.text.length;
      } else {
        sources.push({ ...head, text: head.text.slice(0, need) });
        this.#pending[0] = { ...head, text: head.text.slice(need) };
        need = 0;
      }
    }
    // a matched stop string and whatever followed it are never released
    if (this.#stop.stopped) this.#pending = [];
    return { text, sources };
  }
}

/** One text event from the parts of consecutive tokens. */
export function textEvent(parts: TextPart[], withLogprobs: boolean): Extract<TextEvent, { type: 'text' }> {
  return {
    type: 'text',
    text: parts.map((p) => p.text).join(''),
    tokenIds: parts.flatMap((p) => (p.tokenId === undefined ? [] : [p.tokenId])),
    logprobs: withLogprobs ? parts.flatMap((p) => (p.logprob ? [p.logprob] : [])) : undefined,
    parts,
  };
}
