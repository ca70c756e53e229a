// Pieces several drafters share: their ONNX sessions and the heads manifest.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { DrafterUnavailable } from '../Drafter.ts';

export interface HeadsManifest {
  kind: string;
  heads: number;
  topk: number;
  hidden_size: number;
  heldout_top1: number[];
}

/** The manifest train-drafters writes beside Medusa's and Hydra's head graphs. */
export function loadHeadsManifest(modelDir: string, kind: 'medusa' | 'hydra'): HeadsManifest {
  const file = path.join(modelDir, 'heads', `${kind}.json`);
  if (!existsSync(file)) throw new DrafterUnavailable(`no ${kind} heads at ${file} (npm run train-drafters -- --model MODEL_DIR --text ... --kinds ${kind})`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** Head graphs are tiny: one intra-op thread, so their idle thread pools cannot spin against the
 *  target's (each onnxruntime session owns its own pool). */
export async function headSession(file: string): Promise<ort.InferenceSession> {
  if (!existsSync(file)) throw new DrafterUnavailable(`missing ${file}`);
  return ort.InferenceSession.create(file, { interOpNumThreads: 1, intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
}
