// The text `npm run train-drafters` trains on: UTF-8 files and folders, read into documents,
// tokenized with the model's own tokenizer, split into training and held-out tokens, and written as
// the token files models/tooling/train_drafters.py reads (WORK/train.u16 and valid.u16; .u32 when
// the vocabulary has more than 65,536 tokens, as Llama 3's 128,256 do).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Bad input: the message names the option or file; the command prints it as one line and exits non-zero. */
export class InputError extends Error {}

/** One document in HOLDOUT_EVERY is held out, by a hash of its path (models/tooling/corpus.py's rule). */
export const HOLDOUT_EVERY = 50;
/** Held-out tokens below which the split falls back to the tail of the text. Defaults to `256`. */
export const MIN_HELDOUT_TOKENS = 256;
/** The tail's share of the tokens in that fallback. Defaults to `0.05`. */
export const TAIL_SHARE = 0.05;
/** Fewest tokens worth training on. Defaults to `1024`. */
export const MIN_TOKENS = 1024;

export interface TextDocument {
  /** The path the held-out hash reads: relative to the folder given (with the folder's name), or the file's name. */
  key: string;
  file: string;
  text: string;
}

/** Reads every --text path: a file is one document; a folder gives each file below it (sorted,
 *  hidden entries left out), skipping files that are not UTF-8 text. */
export function collectDocuments(paths: readonly string[]): { docs: TextDocument[]; skipped: string[] } {
  const docs: TextDocument[] = [];
  const skipped: string[] = [];
  const seen = new Set<string>();
  const add = (file: string, key: string, named: boolean) => {
    const real = path.resolve(file);
    if (seen.has(real)) return;
    seen.add(real);
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (err) {
      throw new InputError(`--text ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const text = decodeText(bytes);
    if (text === null) {
      if (named) throw new InputError(`--text ${file}: not UTF-8 text`);
      skipped.push(file);
      return;
    }
    if (text.trim()) docs.push({ key, file, text: text.replace(/\r\n/g, '\n') });
  };
  for (const p of paths) {
    if (!existsSync(p)) throw new InputError(`--text ${p}: no such file or folder`);
    let st;
    try {
      st = statSync(p);
    } catch (err) {
      throw new InputError(`--text ${p}: cannot read it (${(err as NodeJS.ErrnoException).code})`);
    }
    if (st.isDirectory()) for (const rel of walk(p)) add(path.join(p, rel), path.posix.join(path.basename(path.resolve(p)), rel.split(path.sep).join('/')), false);
    else add(p, path.basename(p), true);
  }
  return { docs, skipped };
}

/** Files below `dir`, relative, sorted, without hidden files and folders. */
function walk(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw new InputError(`--text ${dir}: cannot read the folder (${(err as NodeJS.ErrnoException).code})`);
  }
  const out: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory()) out.push(...walk(path.join(dir, e.name)).map((f) => path.join(e.name, f)));
    else if (e.isFile()) out.push(e.name);
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of UTF-8 bytes without NUL; null for anything else (binary files). */
function decodeText(bytes: Buffer): string | null {
  if (bytes.includes(0)) return null;
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

export function isHeldOut(key: string): boolean {
  return BigInt('0x' + createHash('sha1').update(key).digest('hex')) % BigInt(HOLDOUT_EVERY) === 0n;
}

export interface TokenSplit {
  train: number[];
  valid: number[];
  /** How the held-out tokens were chosen, for the log. */
  rule: string;
}

/** Tokenizes each document (then `eos`, when the model has one) and holds out one document in
 *  HOLDOUT_EVERY by the hash of its key, at least one of several; when that leaves fewer than
 *  MIN_HELDOUT_TOKENS held out (one file, or small ones), the last TAIL_SHARE of the tokens instead. */
export function splitTokens(docs: readonly TextDocument[], encode: (text: string) => number[], eos: number | undefined,
                            onProgress: (done: number, tokens: number) => void = () => {}): TokenSplit {
  const encoded: { key: string; ids: number[] }[] = [];
  let total = 0;
  for (const [i, d] of docs.entries()) {
    const ids = encode(d.text);
    if (eos !== undefined) ids.push(eos);
    encoded.push({ key: d.key, ids });
    total += ids.length;
    onProgress(i + 1, total);
  }
  let held = encoded.filter((d) => isHeldOut(d.key));
  if (encoded.length > 1 && (held.length === 0 || held.length === encoded.length)) {
    // a handful of documents: the one whose hash comes first stands in for the one in HOLDOUT_EVERY
    const hash = (k: string) => createHash('sha1').update(k).digest('hex');
    held = [encoded.reduce((a, b) => (hash(b.key) < hash(a.key) ? b : a))];
  }
  const heldTokens = held.reduce((n, d) => n + d.ids.length, 0);
  if (encoded.length > 1 && heldTokens >= MIN_HELDOUT_TOKENS) {
    const heldSet = new Set(held);
    return {
      train: encoded.filter((d) => !heldSet.has(d)).flatMap((d) => d.ids),
      valid: held.flatMap((d) => d.ids),
      rule: `${held.length} of ${encoded.length} documents, one in ${HOLDOUT_EVERY} by the SHA-1 of its path`,
    };
  }
  const all = encoded.flatMap((d) => d.ids);
  const tail = Math.min(Math.floor(all.length / 2), Math.max(Math.ceil(all.length * TAIL_SHARE), MIN_HELDOUT_TOKENS));
  return {
    train: all.slice(0, all.length - tail),
    valid: all.slice(all.length - tail),
    rule: `the last ${tail} tokens held out (${encoded.length === 1 ? 'one document' : `held-out documents gave ${heldTokens} tokens`}: the last ${TAIL_SHARE * 100}%, at least ${MIN_HELDOUT_TOKENS})`,
  };
}

/** Token file suffix for a vocabulary: 16-bit ids while every id fits (models/tooling/target.py's rule). */
export function tokenSuffix(vocab: number): 'u16' | 'u32' {
  return vocab <= 65536 ? 'u16' : 'u32';
}

/** Writes WORK/{split}.u16 or .u32 (little-endian, as numpy's fromfile reads them on every platform
 *  Node runs on) and removes a file of the other width, which the Python side would read first. */
export function writeTokens(work: string, split: 'train' | 'valid', ids: readonly number[], vocab: number): string {
  const sfx = tokenSuffix(vocab);
  const bad = ids.find((id) => id < 0 || id >= vocab);
  if (bad !== undefined) throw new InputError(`the tokenizer gave token ${bad}, past the model's vocab_size of ${vocab} (config.json)`);
  const arr = sfx === 'u16' ? Uint16Array.from(ids) : Uint32Array.from(ids);
  const file = path.join(work, `${split}.${sfx}`);
  writeFileSync(file + '.tmp', new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
  renameSync(file + '.tmp', file);
  rmSync(path.join(work, `${split}.${sfx === 'u16' ? 'u32' : 'u16'}`), { force: true });
  return file;
}
