#!/usr/bin/env node
// Puts onnxruntime's CUDA execution provider next to onnxruntime-node, which npm does not ship
// (`npm ci` skips its download, see .npmrc). Two routes:
//
//   --cuda 13 (default): from the npm registry alone, so it works wherever `npm ci` works.
//     onnxruntime-node is switched to 1.29.0 (not saved to package.json), and the CUDA 13 build of
//     onnxruntime 1.29.0's provider libraries is taken from the npm package
//     com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9. The provider and the core must be the same
//     onnxruntime version: this pair is the one tested on an H200 (CUDA 13 libraries, driver 580).
//     Needs CUDA 13's cudart, cuBLAS/cuBLASLt and cuRAND on the loader path.
//   --cuda 12: onnxruntime-node's own installer fetches the CUDA 12 provider for the installed
//     onnxruntime-node (1.30) from NuGet; needs network access to it, and CUDA 12 + cuDNN 9.
//
// `npm ci` undoes either route (it restores onnxruntime-node from the lock file, without provider).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ORT_CUDA13 = '1.29.0';
const PROVIDER_PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9';
const ORT_DIR = path.join(ROOT, 'node_modules', 'onnxruntime-node');
// where onnxruntime-node loads providers from (src/worker/runner.ts looks for the CUDA one there)
const BIN = path.join(ORT_DIR, 'bin', 'napi-v6', 'linux', 'x64');
const PACKAGED = path.join('package', 'Plugins', 'Linux', 'x64'); // inside the provider package

const args = process.argv.slice(2);
const at = args.indexOf('--cuda');
const cuda = at >= 0 ? args[at + 1] : '13';
if (cuda !== '12' && cuda !== '13') fail(`--cuda must be 12 or 13, got ${JSON.stringify(cuda)}`);
if (process.platform !== 'linux' || process.arch !== 'x64') fail(`the CUDA provider is set up for linux-x64 only (this is ${process.platform}-${process.arch})`);

const npm = (...a) => execFileSync('npm', a, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } });
const ortVersion = () => JSON.parse(readFileSync(path.join(ORT_DIR, 'package.json'), 'utf8')).version;

if (cuda === '12') {
  step(`onnxruntime-node ${ortVersion()}: fetching its CUDA 12 provider with its own installer (network access to NuGet needed)`);
  execFileSync(process.execPath, [path.join(ORT_DIR, 'script', 'install.js')], {
    cwd: ORT_DIR, stdio: 'inherit', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'cuda12' },
  });
} else {
  if (ortVersion() !== ORT_CUDA13) {
    step(`switching onnxruntime-node ${ortVersion()} -> ${ORT_CUDA13} (the version of the CUDA 13 provider build; not saved)`);
    // an install made with --omit=dev (the Dockerfile's) stays without dev dependencies
    const dev = Object.keys(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).devDependencies ?? {});
    const omitDev = dev.length > 0 && !dev.some((d) => existsSync(path.join(ROOT, 'node_modules', d)));
    npm('install', '--no-save', '--no-audit', '--no-fund', ...(omitDev ? ['--omit=dev'] : []), `onnxruntime-node@${ORT_CUDA13}`);
    if (ortVersion() !== ORT_CUDA13) fail(`onnxruntime-node is ${ortVersion()} after installing ${ORT_CUDA13}`);
  }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'specserve-cuda-'));
  try {
    step(`fetching ${PROVIDER_PACKAGE} from the npm registry (about 180 MB)`);
    const tgz = npm('pack', PROVIDER_PACKAGE, '--pack-destination', tmp, '--silent').trim().split('\n').pop();
    execFileSync('tar', ['xzf', path.join(tmp, tgz), '-C', tmp, PACKAGED], { stdio: 'inherit' });
    for (const lib of ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so']) {
      copyFileSync(path.join(tmp, PACKAGED, lib), path.join(BIN, lib));
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const provider = path.join(BIN, 'libonnxruntime_providers_cuda.so');
if (!existsSync(provider)) fail(`${provider} is missing after setup`);
step(`done: ${path.relative(ROOT, provider)} (onnxruntime-node ${ortVersion()}, CUDA ${cuda})`);
try {
  const missing = execFileSync('ldd', [provider], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('not found'));
  if (missing.length) {
    console.log(`the loader does not find these CUDA libraries yet (add their folder to LD_LIBRARY_PATH):\n${missing.join('\n')}`);
  }
} catch {
  // no ldd: the server's start-up line says whether CUDA loaded
}
console.log('`npm start` logs "execution provider: CUDA" when the provider loads, or the reason it fell back to CPU.');

function step(msg) {
  console.log(`[setup:cuda] ${msg}`);
}

function fail(msg) {
  console.error(`[setup:cuda] ${msg}`);
  process.exit(1);
}
