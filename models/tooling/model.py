"""Llama-style decoder for the default model family (torch 1.13, ONNX-exportable).

RMSNorm, rotary positions computed from explicit position ids, grouped-query attention, SwiGLU,
embedding tied with the LM head. The same module holds any Llama-family target a model folder has
(target.py builds it from the folder's weights): a head_dim of its own, q/k/v biases, an untied LM
head and rescaled RoPE frequencies are options that specserve-tiny leaves off.

The forward pass used for ONNX takes
  input_ids      [B, T]            int64
  position_ids   [B, T]            int64
  attention_bias [B, 1, T, P+T]    float32, 0 = attend, large negative = blocked (any mask: causal,
                                   padding, tree)
  past K and V   [B, KV, P, hd]    float32 per layer, head-major: the layout attention reads
                                   (see Attention.forward)
and returns
  logits         [B, T, V]
  hidden         [B, T, D]         after the final norm (Medusa / Hydra / Chimera input)
  hidden_shallow [B, T, D]         residual stream after `shallow_layers` blocks (Kangaroo input)
  new K and V    [B, T, KV, hd]    per layer, only the T new positions (RoPE already applied)
"""
import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG = -1e9  # not -inf: a fully masked (padding) row must give no NaN


@dataclass
class Config:
    vocab: int = 4096
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_hidden: int = 704
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    context: int = 1024
    shallow_layers: int = 2
    head_dim: int = 0              # 0: d_model / n_heads (specserve-tiny); config.json may set its own
    qkv_bias: bool = False         # Qwen2 has biases on q, k and v
    o_bias: bool = False           # Llama's attention_bias: on o_proj too
    qk_norm: bool = False          # Qwen3: RMSNorm over each head's q and k before RoPE
    tied: bool = True              # LM head = the embedding table; else a separate matrix
    # inverse RoPE frequencies when rope scaling changes them (graph.ArchConfig.rope_inv_freq);
    # None: computed from rope_theta in float32, as the bundled target was trained
    rope_inv_freq: Optional[Tuple[float, ...]] = None

    def __post_init__(self):
        if not self.head_dim:
            self.head_dim = self.d_model // self.n_heads

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_frequencies(c):
    """Inverse RoPE frequencies [head_dim / 2]: the config's own when rope scaling set them, else
    from rope_theta in float32 (as the bundled target was trained)."""
    if c.rope_inv_freq is not None:
        return torch.tensor(c.rope_inv_freq, dtype=torch.float32)
    return 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2).float() / c.head_dim))


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.kv, self.hd = c.n_heads, c.n_kv_heads, c.head_dim
        self.wq = nn.Linear(c.d_model, self.h * self.hd, bias=c.qkv_bias)
        self.wk = nn.Linear(c.d_model, self.kv * self.hd, bias=c.qkv_bias)
        self.wv = nn.Linear(c.d_model, self.kv * self.hd, bias=c.qkv_bias)
        self.wo = nn.Linear(self.h * self.hd, c.d_model, bias=c.o_bias)
        # modules only where the model has them: specserve-tiny's checkpoints have no such keys
        self.q_norm = RMSNorm(self.hd, c.norm_eps) if c.qk_norm else None
        self.k_norm = RMSNorm(self.hd, c.norm_eps) if c.qk_norm else None

    def forward(self, x, cos, sin, bias, past_k=None, past_v=None):
        """x [B,T,D]; cos/sin [B,T,1,hd]; bias [B,1,T,S] additive; past [B,KV,P,hd] (head-major).

        The past comes in the layout the matmuls read, so the graph appends the new rows to it
        (one copy) and transposes nothing: with a token-major past ([B,P,KV,hd]) it also copied
        the whole past into head-major order for keys and values at every step, which at 16
        streams x 200 tokens was ~20% of a decode step. (Scoring past and new keys apart, to skip
        the append too, measured slower: more small ops per layer.) Returns the new K/V
        token-major [B,T,KV,hd], as the paged cache takes them."""
        B, T, _ = x.shape
        g = self.h // self.kv
        q = self.wq(x).view(B, T, self.h, self.hd)
        k = self.wk(x).view(B, T, self.kv, self.hd)
        v = self.wv(x).view(B, T, self.kv, self.hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # group the query heads that share one kv head: [B, KV, g*T, hd]
        qg = q.view(B, T, self.kv, g, self.hd).permute(0, 2, 3, 1, 4).reshape(B, self.kv, g * T, self.hd)
        keys = k.permute(0, 2, 1, 3)                                 # [B, KV, T, hd]
        values = v.permute(0, 2, 1, 3)
        if past_k is not None:
            keys = torch.cat([past_k, keys], dim=2)                  # [B, KV, S, hd]
            values = torch.cat([past_v, values], dim=2)
        S = keys.shape[2]
        att = torch.matmul(qg, keys.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))  # [B, KV, g*T, S]
        att = att.view(B, self.kv, g, T, S) + bias.unsqueeze(1)      # bias [B,1,1,T,S]
        att = torch.softmax(att, dim=-1).view(B, self.kv, g * T, S)
        y = torch.matmul(att, values)                                # [B, KV, g*T, hd]
        y = y.view(B, self.kv, g, T, self.hd).permute(0, 3, 1, 2, 4).reshape(B, T, self.h * self.hd)
        return self.wo(y), k, v


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.w1 = nn.Linear(c.d_model, c.ffn_hidden, bias=False)
        self.w3 = nn.Linear(c.d_model, c.ffn_hidden, bias=False)
        self.w2 = nn.Linear(c.ffn_hidden, c.d_model, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attn_norm = RMSNorm(c.d_model, c.norm_eps)
        self.attn = Attention(c)
        self.mlp_norm = RMSNorm(c.d_model, c.norm_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, bias, past_k=None, past_v=None):
        a, k, v = self.attn(self.attn_norm(x), cos, sin, bias, past_k, past_v)
        x = x + a
        return x + self.mlp(self.mlp_norm(x)), k, v


def causal_bias(T, P=0, device=None):
    """[1,1,T,P+T] additive causal mask for T new tokens after P cached ones."""
    q = torch.arange(T, device=device).unsqueeze(1) + P
    k = torch.arange(P + T, device=device).unsqueeze(0)
    return torch.where(k <= q, 0.0, NEG).view(1, 1, T, P + T)


class Decoder(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab, c.d_model)
        self.layers = nn.ModuleList([Block(c) for _ in range(c.n_layers)])
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        # an untied head is a module of its own; tied, there is none (the bundled checkpoints' keys)
        self.lm = None if c.tied else nn.Linear(c.d_model, c.vocab, bias=False)
        self.register_buffer("inv_freq", rope_frequencies(c), persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2 style scaled init of residual projections
            if name.endswith("wo.weight") or name.endswith("w2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def n_params(self, embedding=True):
        n = sum(p.numel() for p in self.parameters())
        return n if embedding else n - self.embed.weight.numel()

    @property
    def lm_weight(self):
        """The LM head matrix [V, D]: the embedding table when tied. Drafters project onto it; the
        embedding itself stays the embedding (Hydra's path tokens, Chimera's trigram encoder)."""
        return self.embed.weight if self.lm is None else self.lm.weight

    def rope(self, position_ids):
        freqs = position_ids.unsqueeze(-1).float() * self.inv_freq     # [B,T,hd/2]
        emb = torch.cat([freqs, freqs], dim=-1).unsqueeze(2)            # [B,T,1,hd]
        return emb.cos(), emb.sin()

    def lm_head(self, h):
        B, T, D = h.shape
        # 2-D so the export can be re-tied to Gemm(h, E, transB=1) (see export.py)
        return F.linear(h.reshape(B * T, D), self.lm_weight).view(B, T, self.c.vocab)

    def forward(self, input_ids, position_ids=None, bias=None, past=None, last_only=False):
        """Returns logits, hidden (post-norm), hidden_shallow, list of (new_k, new_v). last_only:
        logits of the last position alone ([B, 1, V]; a prompt's [B, T, V] is gigabytes at 128k tokens)."""
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).unsqueeze(0).expand(B, T)
        if bias is None:
            bias = causal_bias(T, device=input_ids.device)
        cos, sin = self.rope(position_ids)
        x = self.embed(input_ids)
        shallow = x
        new = []
        for i, layer in enumerate(self.layers):
            pk, pv = past[i] if past is not None else (None, None)
            x, k, v = layer(x, cos, sin, bias, pk, pv)
            new.append((k, v))
            if i + 1 == self.c.shallow_layers:
                shallow = x
        h = self.norm(x)
        return self.lm_head(h[:, -1:] if last_only else h), h, shallow, new

    def loss(self, ids, targets):
        logits = self.forward(ids)[0]
        return F.cross_entropy(logits.view(-1, self.c.vocab), targets.reshape(-1))
