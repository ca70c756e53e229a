"""What a Hugging Face config.json means for specserve's graphs, and which configs they cannot serve.

library use: check(config, context=None) -> served context (raises ConfigError naming what is
refused); arch_fields(config) -> the keyword arguments of graph.ArchConfig; SUPPORTED.

The fields and defaults are transformers' (LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config): a key a config
leaves out means what transformers would take it to mean, so a folder converts the way
`AutoModelForCausalLM.from_pretrained` would load it. graph.ArchConfig.from_hf reads configs through
here too, so a converted folder's graphs are rewritten (write_graphs.py) with the same RoPE and biases.
"""
import math

import numpy as np

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")
# the files of a checkpoint folder that tokenize and template chats: carried over as they are
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json")
# why a Llama-family type next door is refused: what its forward adds that graph.py does not write
NOT_YET = {
    "gemma": "it scales the embedding by sqrt(hidden), adds 1 to every RMSNorm weight and uses GELU",
    "gemma2": "it soft-caps logits and attention scores and alternates sliding-window layers",
    "phi3": "its q/k/v and gate/up projections are fused tensors, and its RoPE may be partial or longrope",
    "mixtral": "its MLP is a mixture of experts",
}
ROPE_TYPES = ("default", "linear", "llama3")
LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
# transformers' defaults for keys a config.json may leave out (the same for the four types)
DEFAULTS = {"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 2048,
            "tie_word_embeddings": False, "hidden_act": "silu"}
# MistralConfig's sliding_window when the key is absent (an explicit null turns it off)
MISTRAL_WINDOW = 4096
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


class ConfigError(ValueError):
    """A config.json that specserve's graphs cannot serve faithfully."""


def _get(c, key):
    return c[key] if c.get(key) is not None else DEFAULTS[key]


def rope_settings(c):
    """(rope type, its parameters, rope_theta): rope_scaling, or the rope_parameters of newer
    transformers configs; a missing type is "default"."""
    rope = c.get("rope_scaling") or c.get("rope_parameters") or {}
    kind = rope.get("rope_type") or rope.get("type") or "default"
    theta = c.get("rope_theta") or rope.get("rope_theta") or DEFAULTS["rope_theta"]
    return kind, rope, float(theta)


def inv_freq(c, head_dim):
    """RoPE's inverse frequencies [head_dim / 2] as transformers computes them for the config's
    rope type (modeling_rope_utils: _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
    _compute_llama3_parameters), in float64; None for the default (graph.py derives it from rope_theta)."""
    kind, rope, theta = rope_settings(c)
    if kind not in ROPE_TYPES:
        raise ConfigError(f"rope_scaling type {kind!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
    if kind == "default":
        return None
    base = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    factor = rope.get("factor")
    if not isinstance(factor, (int, float)) or factor <= 0:
        raise ConfigError(f"rope_scaling type {kind!r} needs a positive factor, got {factor!r}")
    if kind == "linear":
        return base / factor
    missing = [k for k in LLAMA3_KEYS if not isinstance(rope.get(k), (int, float))]
    if missing:
        raise ConfigError(f"rope_scaling type 'llama3' lacks {', '.join(missing)}")
    low, high, old = rope["low_freq_factor"], rope["high_freq_factor"], rope["original_max_position_embeddings"]
    if high <= low:
        raise ConfigError(f"rope_scaling: high_freq_factor {high} must exceed low_freq_factor {low}")
    # wavelengths longer than the original context / low_freq_factor are slowed by `factor`, shorter
    # than / high_freq_factor kept, and those between blended linearly in old_context / wavelength
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / base
    scaled = np.where(wavelen > low_wavelen, base / factor, base)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled)


def head_dim(c):
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def attention_bias(c):
    """(q/k/v biases, o_proj bias): Qwen2 always has the first and never the second; Llama's and
    Qwen3's attention_bias gives all four projections a bias (LlamaAttention, Qwen3Attention);
    Mistral has none."""
    kind = c.get("model_type")
    if kind == "qwen2":
        return True, False
    if kind in ("llama", "qwen3") and c.get("attention_bias"):
        return True, True
    return False, False


def sliding_layers(c):
    """The layers transformers runs with a sliding window, and its width (None: none does)."""
    kind, layers = c.get("model_type"), c["num_hidden_layers"]
    if isinstance(c.get("layer_types"), list):
        sliding = [i for i, t in enumerate(c["layer_types"]) if t == "sliding_attention"]
        return sliding, c.get("sliding_window") if sliding else None
    if kind == "mistral":
        window = c["sliding_window"] if "sliding_window" in c else MISTRAL_WINDOW
        return (list(range(layers)), window) if window is not None else ([], None)
    if kind in ("qwen2", "qwen3") and c.get("use_sliding_window") and c.get("sliding_window") is not None:
        # Qwen2/Qwen3 layers from max_window_layers on use the window (Qwen2Config, Qwen3Config)
        sliding = [i for i in range(layers) if i >= c.get("max_window_layers", 28)]
        return sliding, c["sliding_window"] if sliding else None
    return [], None


def check(c, context=None):
    """Refuses, naming the field, what the graphs cannot compute as transformers does; returns the
    context to serve (`context`, default max_position_embeddings)."""
    kind = c.get("model_type")
    if kind not in SUPPORTED:
        why = f": {NOT_YET[kind]}" if kind in NOT_YET else ""
        raise ConfigError(f"model_type {kind!r} is not supported{why} (supported: {', '.join(SUPPORTED)})")
    missing = [k for k in REQUIRED if not isinstance(c.get(k), int) or c[k] <= 0]
    if missing:
        raise ConfigError(f"config.json has no positive integer {', '.join(missing)}")
    act = _get(c, "hidden_act")
    if act != "silu":
        raise ConfigError(f"hidden_act {act!r} is not supported: the graphs compute SwiGLU with SiLU")
    if c.get("mlp_bias"):
        raise ConfigError("mlp_bias true is not supported: the graphs' MLP projections have no bias")
    if c.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConfigError(f"partial_rotary_factor {c['partial_rotary_factor']} is not supported: the graphs rotate whole heads")
    heads, kv = c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"]
    if heads % kv:
        raise ConfigError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    hd = head_dim(c)
    if hd % 2:
        raise ConfigError(f"head_dim {hd} is odd: rotate-half RoPE needs an even head size")
    inv_freq(c, hd)  # refuses rope types it does not compute
    longest = _get(c, "max_position_embeddings")
    served = longest if context is None else context
    if not 1 <= served <= longest:
        raise ConfigError(f"--context {served} must be from 1 to max_position_embeddings {longest}")
    sliding, window = sliding_layers(c)
    if window is not None and window < served:
        raise ConfigError(f"sliding_window {window} (layers {sliding[0]}-{sliding[-1]}) is smaller than the served "
                          f"context {served}: specserve attends to the whole context, where the model sees only "
                          f"the last {window} tokens; serve within the window with --context {window}")
    return served


def arch_fields(c, context=None):
    """graph.ArchConfig's keyword arguments. `context` (the rows of the RoPE tables): the served
    context, by default config.json's specserve.context, else max_position_embeddings."""
    heads = c["num_attention_heads"]
    hd = head_dim(c)
    qkv_bias, o_bias = attention_bias(c)
    served = context or (c.get("specserve") or {}).get("context") or _get(c, "max_position_embeddings")
    return dict(vocab=c["vocab_size"], hidden=c["hidden_size"], layers=c["num_hidden_layers"], heads=heads,
                kv_heads=c.get("num_key_value_heads") or heads, head_dim=hd, intermediate=c["intermediate_size"],
                rope_theta=rope_settings(c)[2], norm_eps=_get(c, "rms_norm_eps"), context=served,
                tied=bool(_get(c, "tie_word_embeddings")), qkv_bias=qkv_bias, o_bias=o_bias, inv_freq=inv_freq(c, hd),
                qk_norm=c.get("model_type") == "qwen3")
