// The one place drafter names resolve to implementations. Adding a drafter means adding a case
// here; the `satisfies never` makes a forgotten name a compile error.
import { DTYPE_SUFFIX, type WeightDtype } from '../model/config.ts';
import type { Drafter } from './Drafter.ts';
import { DrafterUnavailable } from './Drafter.ts';
import { AdedDrafter } from './aded/index.ts';
import { ChimeraDrafter } from './chimera/index.ts';
import { HydraDrafter } from './hydra/index.ts';
import { KangarooDrafter } from './kangaroo/index.ts';
import { MedusaDrafter } from './medusa/index.ts';
import { PromptLookupDrafter } from './prompt-lookup/index.ts';

export const DRAFTER_NAMES = ['prompt-lookup', 'aded', 'medusa', 'hydra', 'kangaroo', 'chimera'] as const;
export type DrafterName = (typeof DRAFTER_NAMES)[number];

export const DRAFTER_DESCRIPTIONS: Record<DrafterName, string> = {
  'prompt-lookup': 'n-gram match in the context, chain drafts (no model files)',
  aded: 'adaptive trigram matrix (corpus prior + per-request boosts) with tree search (ADED)',
  medusa: 'Medusa heads on the target hidden state, dynamic tree from head log-probabilities',
  hydra: 'Hydra sequentially dependent heads (hidden state + path embeddings), tree grown depth by depth',
  kangaroo: "Kangaroo self-speculation: the target's shallow layers + adapter draft a chain (double early exit); deep layers verify",
  chimera: 'Chimera: trigram encoder + full-context layer over the target hidden states, residual heads; greedy path + siblings drafted in one call',
};

/** A drafter as GET /v1/drafters lists it. */
export interface DrafterInfo {
  name: string;
  available: boolean;
  /** Why not, when unavailable. */
  reason?: string;
  description: string;
}

export interface DrafterEnv {
  modelDir: string;
  vocabSize: number;
  /** Whether the target graph verifies trees and outputs hidden states (the speculative layout). */
  treeMask: boolean;
  /** Weight format of the target graph (drafters that run target layers run the same format). */
  dtype: WeightDtype;
  /** Layers after which the target's `hidden_shallow` output is taken. */
  shallowLayers?: number;
  contextLength?: number;
  /** Whether the engine can verify with the target's deep layers alone (Kangaroo). */
  deepVerify?: boolean;
  /** Overrides the Kangaroo adapter's calibrated stop threshold. */
  kangarooThreshold?: number;
}

export async function createDrafter(name: DrafterName, env: DrafterEnv): Promise<Drafter> {
  switch (name) {
    case 'prompt-lookup':
      return new PromptLookupDrafter();
    case 'aded':
      return AdedDrafter.load(env);
    case 'medusa':
      return MedusaDrafter.load(env);
    case 'hydra':
      return HydraDrafter.load(env);
    case 'kangaroo':
      if (!env.deepVerify) throw new DrafterUnavailable(`needs its split graphs for ${env.dtype} weights (kangaroo/deep${DTYPE_SUFFIX[env.dtype]}.onnx) and the speculative ONNX layout (npm run train-drafters -- --kinds kangaroo writes them in the folder's weight formats)`);
      return KangarooDrafter.load(env);
    case 'chimera':
      return ChimeraDrafter.load(env);
    default:
      throw new Error(`unhandled drafter ${name satisfies never}`);
  }
}

export interface DrafterSet {
  drafters: Map<string, Drafter>;
  info: DrafterInfo[];
}

/** Builds every drafter this model can run; the rest are listed with the reason. */
export async function createDrafters(env: DrafterEnv): Promise<DrafterSet> {
  const drafters = new Map<string, Drafter>();
  const info: DrafterSet['info'] = [];
  for (const name of DRAFTER_NAMES) {
    try {
      const d = await createDrafter(name, env);
      if (d.needs.treeMask && !env.treeMask) throw new DrafterUnavailable('needs the speculative ONNX layout (tree mask)');
      if (d.needs.hidden && !env.treeMask) throw new DrafterUnavailable('needs hidden-state outputs (speculative ONNX layout)');
      drafters.set(name, d);
      info.push({ name, available: true, description: DRAFTER_DESCRIPTIONS[name] });
    } catch (err) {
      info.push({ name, available: false, reason: (err as Error).message, description: DRAFTER_DESCRIPTIONS[name] });
    }
  }
  return { drafters, info };
}
