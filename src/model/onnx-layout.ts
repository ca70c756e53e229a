// Conventions of the ONNX graphs' inputs that both the engine and the drafters' own graphs follow
// (models/tooling/graph.py writes them).

/** Additive attention bias of a blocked position. Not -Infinity: a fully masked (padding) row
 *  must give no NaN. */
export const NEG_BIAS = -1e9;
