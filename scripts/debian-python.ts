// Debian's Python and the Debian packages of the modules the model tooling imports: the one place
// a script (or a test deciding whether to skip) asks whether /usr/bin/python3 can run it.
import { spawn, spawnSync } from 'node:child_process';

/** apt's python3-* packages install into this one (the first python3 on PATH may be another). */
export const DEBIAN_PYTHON = '/usr/bin/python3';

/** Module -> Debian package. */
export const PYTHON_PACKAGES: Record<string, string> = { torch: 'python3-torch', numpy: 'python3-numpy', onnx: 'python3-onnx' };

/** Without it Debian's torch runs on the reference BLAS, ~75x slower (models/README.md). */
export const OPENBLAS_PACKAGE = 'libopenblas0-pthread';

/** Why `python` cannot run tooling that imports `modules` (with the apt-get line that fixes it), or
 *  undefined when it can. */
export function pythonProblem(modules: readonly string[], python = DEBIAN_PYTHON): string | undefined {
  // imported, not just found: a torch whose shared libraries are missing is found but does not load
  const probe = `import importlib\nbad = []\nfor m in ${JSON.stringify(modules)}:\n    try: importlib.import_module(m)\n    except Exception: bad.append(m)\nprint(' '.join(bad))`;
  const r = spawnSync(python, ['-c', probe], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `${python} does not run (${r.error?.message ?? r.stderr.trim()}): apt-get install python3`;
  const missing = r.stdout.trim().split(/\s+/).filter(Boolean);
  if (!missing.length) return undefined;
  const packages = missing.map((m) => PYTHON_PACKAGES[m] ?? `python3-${m}`);
  if (missing.includes('torch')) packages.push(OPENBLAS_PACKAGE);
  return `${python} cannot import ${missing.join(', ')}: apt-get install ${packages.join(' ')}`;
}

/** Whether dpkg says `pkg` is installed; undefined where there is no dpkg (not Debian). */
export function debianPackageInstalled(pkg: string): boolean | undefined {
  const r = spawnSync('dpkg', ['-s', pkg], { encoding: 'utf8' });
  if (r.error) return undefined;
  return r.status === 0;
}

/** Runs `python args` with its output passing through and resolves to its exit status. Ctrl-C in a
 *  terminal reaches the child too (same process group): this process waits for it to exit rather
 *  than dying first, and passes SIGTERM on. */
export function runPython(args: readonly string[], python = DEBIAN_PYTHON): Promise<number> {
  const child = spawn(python, args, { stdio: 'inherit' });
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? 130 : 1)));
  });
}
