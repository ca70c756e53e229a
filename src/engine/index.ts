// Engine entry point used by the CLI, tests and benchmarks.
import { LocalEngine, type EngineHooks } from './engine.ts';
import { ENGINE_DEFAULTS, type EngineOptions } from './options.ts';

export { LocalEngine, type EngineHooks } from './engine.ts';
export { ENGINE_DEFAULTS, type EngineOptions } from './options.ts';
export type * from './types.ts';

export function createEngine(opts: Partial<EngineOptions> & { modelDir: string }, hooks?: EngineHooks): Promise<LocalEngine> {
  return LocalEngine.create({ ...ENGINE_DEFAULTS, ...opts }, hooks);
}
