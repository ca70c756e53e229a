"""The frozen target of a model folder, in torch, and the token files drafters train on.

library use: load(model_dir, device) -> (model.Decoder, model.Config)
             read_tokens(work, split) -> uint16 | uint32 ndarray;  token_suffix(vocab) -> "u16" | "u32"
check:       /usr/bin/python3 models/tooling/target.py MODEL_DIR [--reference FILE]
             (compares the torch target's logits with MODEL_DIR/reference.json when the folder has
             one, or with hf_reference.py's float64 forward of the checkpoint it was converted from)

The weights come from weights.load (the folder's fp32 graph, or the checkpoint it was converted
from), under Hugging Face names; this maps them onto model.Decoder, which takes every shape a
Llama-family ArchConfig has (head_dim of its own, attention biases, untied LM head, rescaled RoPE).
Every drafter script reads its target through load(), so a drafter trains against the weights the
server runs.
"""
import contextlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import weights  # noqa: E402
from model import Config, Decoder  # noqa: E402

# model.Decoder's names -> Hugging Face Llama's, per layer (weights and, with qkv_bias, biases)
LAYER_NAMES = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm", "attn.wq": "self_attn.q_proj",
               "attn.wk": "self_attn.k_proj", "attn.wv": "self_attn.v_proj", "attn.wo": "self_attn.o_proj",
               "mlp.w1": "mlp.gate_proj", "mlp.w3": "mlp.up_proj", "mlp.w2": "mlp.down_proj",
               "attn.q_norm": "self_attn.q_norm", "attn.k_norm": "self_attn.k_norm"}
TOP_NAMES = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight", "lm.weight": "lm_head.weight"}


def hf_name(name):
    """The Hugging Face name of a model.Decoder parameter (layers.3.attn.wq.bias -> model.layers.3.self_attn.q_proj.bias)."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    _, i, rest = name.split(".", 2)
    module, kind = rest.rsplit(".", 1)
    return f"model.layers.{i}.{LAYER_NAMES[module]}.{kind}"


def hf_weights(model):
    """The Decoder's weights under Hugging Face names, as graph.build() takes them."""
    return {hf_name(k): v.detach().float().cpu().numpy().copy() for k, v in model.state_dict().items()}


def config_from_arch(arch, shallow_layers=1):
    """model.Config for a graph.ArchConfig. RoPE frequencies are passed on only when rope scaling
    set them: otherwise the Decoder computes them from rope_theta as the bundled target was trained."""
    inv = tuple(float(x) for x in arch.inv_freq) if arch.inv_freq is not None else None
    return Config(vocab=arch.vocab, d_model=arch.hidden, n_layers=arch.layers, n_heads=arch.heads, n_kv_heads=arch.kv_heads,
                  ffn_hidden=arch.intermediate, rope_theta=arch.rope_theta, norm_eps=arch.norm_eps, context=arch.context,
                  shallow_layers=shallow_layers, head_dim=arch.head_dim, qkv_bias=arch.qkv_bias,
                  o_bias=arch.o_bias, qk_norm=arch.qk_norm, tied=arch.tied,
                  rope_inv_freq=inv)


@contextlib.contextmanager
def _no_init():
    """Skips random initialisation while a module is built: its weights are replaced right after,
    and initialising a billion parameters on two cores takes longer than training a head."""
    names = ("normal_", "uniform_", "kaiming_uniform_", "zeros_", "ones_")
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda t, *a, **k: t)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def shallow_layers(model_dir):
    """Layers before the folder's hidden_shallow output (Kangaroo's exit layer); 1 when unset."""
    with open(os.path.join(model_dir, "config.json")) as f:
        return int(json.load(f).get("specserve", {}).get("shallow_layers") or 1)


def load(model_dir, device="cpu"):
    """The folder's target as a frozen model.Decoder in eval mode on `device`, and its Config."""
    arch, w = weights.load(model_dir)
    cfg = config_from_arch(arch, shallow_layers(model_dir))
    with _no_init():
        m = Decoder(cfg)
    state = m.state_dict()
    missing = [hf_name(k) for k in state if hf_name(k) not in w]
    if missing:
        raise ValueError(f"{model_dir}: the weights lack {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    for k, p in m.named_parameters():
        src = w[hf_name(k)]
        if tuple(src.shape) != tuple(p.shape):
            raise ValueError(f"{model_dir}: {hf_name(k)} is {tuple(src.shape)}, config.json implies {tuple(p.shape)}")
        # shares the array (no second copy of the weights) unless it is read-only
        p.data = torch.from_numpy(src if src.flags.writeable else src.copy())
        p.requires_grad_(False)
    m.eval()
    return m.to(device), cfg


def token_suffix(vocab):
    """Token files are uint16 while every id fits (vocabularies up to 65,536), else uint32."""
    return "u16" if vocab <= 1 << 16 else "u32"


TOKEN_DTYPES = {"u32": np.uint32, "u16": np.uint16}


def token_path(work, split):
    """WORK/{split}.u32 when present, else WORK/{split}.u16; None when neither is."""
    for sfx in TOKEN_DTYPES:
        path = os.path.join(work, f"{split}.{sfx}")
        if os.path.exists(path):
            return path
    return None


def read_tokens(work, split):
    """The token ids of token_path(work, split)."""
    path = token_path(work, split)
    if path is None:
        raise FileNotFoundError(f"no {split}.u32 or {split}.u16 token file in {work}")
    return np.fromfile(path, dtype=TOKEN_DTYPES[path.rsplit(".", 1)[1]])


def pick_device():
    """CUDA when torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def main():
    import argparse
    ap = argparse.ArgumentParser(description="Builds the torch target from a model folder and checks it against reference logits.")
    ap.add_argument("model_dir")
    ap.add_argument("--reference", default=None, help="MODEL_DIR/reference.json (export.py's: prompt, positions, logits, ...) "
                    "or hf_reference.py's output (ids, logits at every position); default: the folder's reference.json")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()
    m, cfg = load(a.model_dir)
    n = sum(p.numel() for p in m.parameters())
    print(f"[target] {a.model_dir}: {n / 1e6:.2f} M parameters, {cfg.n_layers} layers, hidden {cfg.d_model}, heads {cfg.n_heads}/"
          f"{cfg.n_kv_heads} x {cfg.head_dim}, vocab {cfg.vocab}, {'tied' if cfg.tied else 'untied'} LM head", flush=True)
    ref_path = a.reference or os.path.join(a.model_dir, "reference.json")
    if not os.path.exists(ref_path):
        if a.reference:
            sys.exit(f"target: {ref_path} not found")
        return
    ref = json.load(open(ref_path))
    prompt = ref.get("prompt", ref.get("ids"))
    positions = ref.get("positions", list(range(len(prompt))))
    with torch.no_grad():
        logits, hidden, shallow, _ = m(torch.tensor([prompt]))
    err = {}
    for key, out in (("logits", logits), ("hidden", hidden), ("hidden_shallow", shallow)):
        if key in ref:
            want = torch.tensor(ref[key], dtype=torch.float32)
            err[key] = (out[0, positions] - want).abs().max().item()
    worst = max(err.values())
    print(f"[target] {os.path.basename(ref_path)} max |diff|: {json.dumps({k: float(f'{v:.3g}') for k, v in err.items()})}", flush=True)
    if worst > a.tolerance:
        sys.exit(f"target: differs from {ref_path} by {worst:.3g} (tolerance {a.tolerance})")


if __name__ == "__main__":
    main()
