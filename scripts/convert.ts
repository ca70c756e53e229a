// npm run convert -- --from HF_DIR --to OUT_DIR [--dtype fp32,int8] [--shallow-layers N] [--context N] [--force]
//
// Turns a Hugging Face Llama / Mistral / Qwen2 / Qwen3 checkpoint folder (config.json, safetensors,
// tokenizer.json) into a model folder `npm start -- --model OUT_DIR` serves. The work is
// models/tooling/convert.py's (numpy and onnx: Debian's python3-numpy and python3-onnx, installed
// when missing and this user may); this entry checks the options and the Python, and passes
// convert.py's progress lines and exit status through.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { aptInstall } from './apt.ts';
import { integerOption } from './cli-options.ts';
import { DEBIAN_PYTHON, debianPackageInstalled, PYTHON_PACKAGES, pythonProblem, runPython } from './debian-python.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CONVERT_PY = path.join(ROOT, 'models', 'tooling', 'convert.py');
/** What convert.py imports beyond the standard library. */
const MODULES = ['numpy', 'onnx'];

const positive = (name: string) => integerOption(name, 1);

const program = new Command()
  .name('convert')
  .description('Convert a Hugging Face Llama, Mistral, Qwen2 or Qwen3 checkpoint folder (safetensors) into a specserve model folder')
  .requiredOption('--from <dir>', 'Hugging Face checkpoint folder: config.json, model.safetensors or its shards and index, tokenizer.json')
  .requiredOption('--to <dir>', 'model folder to write (built beside it, renamed into place)')
  .option('--dtype <list>', 'weight formats, comma-separated: fp32 (CUDA; the weights drafter training reads), int8, int4 (CPU)', 'fp32,int8')
  .option('--shallow-layers <n>', "layers before the speculative graph's hidden_shallow output, Kangaroo's exit (default: layers / 16, at least 1)", positive('--shallow-layers'))
  .option('--context <n>', 'context to serve, at most max_position_embeddings (default: max_position_embeddings)', positive('--context'))
  .option('--force', 'replace --to when it exists and is not empty')
  .option('--python <path>', 'a Python 3 with numpy and onnx', DEBIAN_PYTHON)
  .showHelpAfterError();

const log = (message: string) => console.log(`convert: ${message}`);

/** Throws, with the apt-get line that fixes it, unless `python` imports MODULES; Debian's Python
 *  gets Debian's packages when this user may install them (as `npm run cluster` gets HAProxy). */
function ensurePython(python: string): void {
  const problem = pythonProblem(MODULES, python);
  if (!problem) return;
  const packages = MODULES.map((m) => PYTHON_PACKAGES[m]).filter((p) => debianPackageInstalled(p) === false);
  if (python !== DEBIAN_PYTHON || !packages.length) throw new Error(problem);
  aptInstall(packages, { why: `${python} cannot import ${MODULES.join(' or ')}`, log });
  const still = pythonProblem(MODULES, python);
  if (still) throw new Error(`${still} (after installing ${packages.join(' ')})`);
}

async function main(): Promise<number> {
  program.parse();
  const o = program.opts<{ from: string; to: string; dtype: string; shallowLayers?: number; context?: number; force?: boolean; python: string }>();
  ensurePython(o.python);
  const args = [CONVERT_PY, '--from', o.from, '--to', o.to, '--dtype', o.dtype];
  if (o.shallowLayers !== undefined) args.push('--shallow-layers', String(o.shallowLayers));
  if (o.context !== undefined) args.push('--context', String(o.context));
  if (o.force) args.push('--force');
  // Ctrl-C reaches convert.py from the terminal; it removes its temporary folder and exits, and so do we
  return runPython(args, o.python);
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`convert: ${(err as Error).message}`);
    process.exit(1);
  },
);
