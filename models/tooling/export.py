"""Step 3 of the build: the trained target as a Hugging Face checkpoint, the form `npm run convert`
reads, so that specserve-tiny's graphs come from the same converter as any user's model.

usage: /usr/bin/python3 models/tooling/export.py WORK_DIR HF_DIR --tokenizer-from MODEL_DIR

Reads WORK_DIR/target.pt (train.py's) and writes HF_DIR: config.json (LlamaForCausalLM, tied
embedding), generation_config.json, model.safetensors (F32) and the tokenizer files prepare.py put
in MODEL_DIR. The build then runs `npm run convert -- --from HF_DIR --to MODEL_DIR` and
tiny_files.py for what specserve-tiny ships besides the graphs.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint  # noqa: E402
from model import Config, Decoder  # noqa: E402
from target import hf_weights  # noqa: E402

EOS_TEXT = "<|endoftext|>"


def load_target(work):
    """(model.Decoder in eval mode, its Config, the checkpoint dict) from WORK/target.pt."""
    ck = torch.load(os.path.join(work, "target.pt"), map_location="cpu")
    cfg = Config(**ck["config"])
    model = Decoder(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, cfg, ck


def hf_config(cfg, eos):
    """config.json of the checkpoint: transformers' LlamaConfig fields for model.Config."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": cfg.d_model, "intermediate_size": cfg.ffn_hidden, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab, "max_position_embeddings": cfg.context, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "hidden_act": "silu", "bos_token_id": eos, "eos_token_id": eos,
        "tie_word_embeddings": cfg.tied, "torch_dtype": "float32", "use_cache": True,
    }


def eos_id(tokenizer_dir):
    tok = json.load(open(os.path.join(tokenizer_dir, "tokenizer.json")))
    return next(t["id"] for t in tok["added_tokens"] if t["content"] == EOS_TEXT)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work")
    ap.add_argument("hf_dir")
    ap.add_argument("--tokenizer-from", required=True, metavar="MODEL_DIR", help="the folder prepare.py wrote the tokenizer into")
    a = ap.parse_args()
    model, cfg, ck = load_target(a.work)
    eos = eos_id(a.tokenizer_from)
    generation = {"bos_token_id": eos, "eos_token_id": eos, "do_sample": False, "max_length": cfg.context}
    w = hf_weights(model)
    checkpoint.write_checkpoint(a.hf_dir, hf_config(cfg, eos), w, "f32", 1, a.tokenizer_from, generation)
    print(f"[export] {a.hf_dir}: {len(w)} tensors, {sum(x.size for x in w.values()) / 1e6:.2f} M parameters, "
          f"step {ck['step']}", flush=True)


if __name__ == "__main__":
    main()
