// Whether a test of the model tooling can run Debian's Python with the modules it imports. Skips
// with the apt-get line that fixes it, unless SPECSERVE_REQUIRE_PYTHON=1 (CI sets it), where a
// missing module fails instead.
import { pythonProblem } from '../../scripts/debian-python.ts';

export function pythonSkip(modules: readonly string[]): string | undefined {
  const problem = pythonProblem(modules);
  if (problem && process.env.SPECSERVE_REQUIRE_PYTHON === '1') throw new Error(`${problem}; SPECSERVE_REQUIRE_PYTHON=1`);
  return problem;
}

/** The environment tests run the tooling in: no __pycache__ left in models/tooling by a test run. */
export const PY_ENV = { ...process.env, PYTHONDONTWRITEBYTECODE: '1' };
