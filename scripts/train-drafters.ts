// npm run train-drafters -- --model MODEL_DIR --text PATH... [--kinds medusa,hydra,kangaroo,chimera,aded]
//     [--steps N] [--seq N] [--batch N] [--selfgen N] [--draft-vocab N] [--threads N] [--work DIR]
//
// Trains the drafters of any model folder (specserve-tiny, or one `npm run convert` wrote) on the
// user's text and exports them into the folder, where the engine finds them. This entry tokenizes
// the text with the folder's tokenizer (drafter-corpus.ts), writes the token files into the work
// folder, checks Debian's Python, then hands over to models/tooling/train_drafters.py, whose lines
// (per-kind steps with the overall ETA, then a table of held-out agreement) pass through. Rerunning
// resumes: each kind continues from its checkpoint, and kinds already exported for the same
// settings and text are skipped.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { loadModelConfig } from '../src/model/config.ts';
import { TextCodec } from '../src/model/text.ts';
import { integerOption } from './cli-options.ts';
import { collectDocuments, InputError, MIN_TOKENS, splitTokens, writeTokens } from './drafter-corpus.ts';
import { debianPackageInstalled, OPENBLAS_PACKAGE, pythonProblem, runPython } from './debian-python.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TRAIN_PY = path.join(ROOT, 'models', 'tooling', 'train_drafters.py');
const DRAFTER_KINDS = ['medusa', 'hydra', 'kangaroo', 'chimera', 'aded'] as const;
/** The work folder inside the model folder, unless --work names another. */
const DEFAULT_WORK = '.train-drafters';


const program = new Command()
  .name('train-drafters')
  .description("Train a model folder's drafters (Medusa, Hydra, Kangaroo, Chimera, the ADED prior) on your text and export them into it")
  .requiredOption('--model <dir>', 'model folder: config.json, tokenizer.json, onnx/ (specserve-tiny, or one npm run convert wrote)')
  .requiredOption('--text <paths...>', 'UTF-8 text files, or folders read recursively (hidden entries and non-text files skipped)')
  .option('--kinds <list>', `drafters to train, comma-separated, of ${DRAFTER_KINDS.join(', ')}`, DRAFTER_KINDS.join(','))
  .option('--steps <n>', "training steps of every trained drafter (default: each drafter's own, see models/tooling/*.py)", integerOption('--steps', 1))
  .option('--seq <n>', "tokens per training window (default: each drafter's own)", integerOption('--seq', 8))
  .option('--batch <n>', "windows per training step (default: each drafter's own)", integerOption('--batch', 1))
  .option('--selfgen <n>', "the target's own greedy continuations in the training mix, 0 for none (default: each drafter's own)", integerOption('--selfgen', 0))
  .option('--draft-vocab <n>', 'draft vocabulary: the N most frequent training tokens (default: the fewest covering 99.5% of the training tokens, a multiple of 64)', integerOption('--draft-vocab', 1))
  .option('--threads <n>', 'torch CPU threads (default: every core)', integerOption('--threads', 1))
  .option('--heldout-prompts <n>', "held-out prompts whose greedy continuations the agreement table is taken on (default: the drafters' 32)", integerOption('--heldout-prompts', 1))
  .option('--work <dir>', `work folder: token files, checkpoints, logs (default: MODEL_DIR/${DEFAULT_WORK})`);

interface Options {
  model: string;
  text: string[];
  kinds: string;
  steps?: number;
  seq?: number;
  batch?: number;
  selfgen?: number;
  draftVocab?: number;
  threads?: number;
  heldoutPrompts?: number;
  work?: string;
}

const log = (message: string) => console.log(`[train-drafters] ${message}`);

/** The model's vocabulary and end-of-text id, and its tokenizer; InputError naming --model otherwise. */
function openModel(dir: string): { vocab: number; eos: number | undefined; codec: TextCodec } {
  if (!existsSync(path.join(dir, 'config.json'))) throw new InputError(`--model ${dir}: no config.json (not a model folder)`);
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    if (!existsSync(path.join(dir, f))) throw new InputError(`--model ${dir}: no ${f} (the tokenizer the text is encoded with)`);
  try {
    const cfg = loadModelConfig(dir);
    return { vocab: cfg.vocabSize, eos: cfg.eosTokenIds[0], codec: new TextCodec(dir) };
  } catch (err) {
    throw new InputError(`--model ${dir}: ${(err as Error).message}`);
  }
}

function checkKinds(list: string): string[] {
  const kinds = list.split(',').map((k) => k.trim()).filter(Boolean);
  const bad = kinds.filter((k) => !(DRAFTER_KINDS as readonly string[]).includes(k));
  if (bad.length || !kinds.length) throw new InputError(`--kinds ${list}: expected some of ${DRAFTER_KINDS.join(', ')}`);
  return kinds;
}

/** Tokenizes --text into WORK's token files. */
function prepareTokens(o: Options, model: ReturnType<typeof openModel>, work: string): void {
  const t0 = Date.now();
  const { docs, skipped } = collectDocuments(o.text);
  if (skipped.length) log(`skipped ${skipped.length} file(s) that are not UTF-8 text (first: ${skipped[0]})`);
  if (!docs.length) throw new InputError(`--text ${o.text.join(' ')}: no text found`);
  let last = Date.now();
  const split = splitTokens(docs, (t) => model.codec.encode(t), model.eos, (done, tokens) => {
    if (Date.now() - last < 2000 && done < docs.length) return;
    last = Date.now();
    log(`tokenized ${done}/${docs.length} documents, ${tokens} tokens`);
  });
  const total = split.train.length + split.valid.length;
  if (total < MIN_TOKENS) throw new InputError(`--text ${o.text.join(' ')}: ${total} tokens in all; at least ${MIN_TOKENS} are needed`);
  mkdirSync(work, { recursive: true });
  const files = (['train', 'valid'] as const).map((s) => writeTokens(work, s, s === 'train' ? split.train : split.valid, model.vocab));
  log(`${docs.length} documents, ${split.train.length} training and ${split.valid.length} held-out tokens (held out: ${split.rule}) in ` +
      `${((Date.now() - t0) / 1000).toFixed(1)} s -> ${files.map((f) => path.basename(f)).join(', ')}`);
}

function pythonArgs(o: Options, modelDir: string, work: string, kinds: string[]): string[] {
  const args = [TRAIN_PY, modelDir, '--work', work, '--kinds', kinds.join(',')];
  const given: [string, number | undefined][] = [['--steps', o.steps], ['--seq', o.seq], ['--batch', o.batch], ['--selfgen', o.selfgen],
    ['--draft-vocab', o.draftVocab], ['--threads', o.threads], ['--heldout-prompts', o.heldoutPrompts]];
  for (const [flag, v] of given) if (v !== undefined) args.push(flag, String(v));
  return args;
}

async function main(): Promise<number> {
  program.parse();
  const o = program.opts<Options>();
  const modelDir = path.resolve(o.model);
  const kinds = checkKinds(o.kinds);
  const model = openModel(modelDir);
  const problem = pythonProblem(['torch', 'numpy', 'onnx']);
  if (problem) throw new InputError(problem);
  if (debianPackageInstalled(OPENBLAS_PACKAGE) === false) log(`warning: ${OPENBLAS_PACKAGE} is not installed: torch trains ~75x slower without it (apt-get install ${OPENBLAS_PACKAGE})`);
  const work = path.resolve(o.work ?? path.join(modelDir, DEFAULT_WORK));
  prepareTokens(o, model, work);
  // Ctrl-C stops the Python side too; its checkpoints make the next run resume
  return runPython(pythonArgs(o, modelDir, work, kinds));
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`train-drafters: ${err instanceof InputError ? err.message : (err as Error).stack}`);
    process.exit(err instanceof InputError ? 2 : 1);
  },
);
