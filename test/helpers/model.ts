// The committed default model: what the real-model test tier runs on.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_MODEL_DIR = process.env.SPECSERVE_TEST_MODEL || path.join(ROOT, 'models', 'specserve-tiny');
