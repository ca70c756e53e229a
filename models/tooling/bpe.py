"""Byte-level BPE (GPT-2 style pre-tokenisation) trainer and encoder that writes a Hugging Face
tokenizer.json, loadable by @huggingface/tokenizers and transformers.js.

Needs Debian's python3-regex for \\p{L} classes.
"""
import collections
import json
import os
import time

import regex as re

# GPT-2's split pattern: contractions, letters, digits, other symbols, whitespace runs.
SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
EOS = "<|endoftext|>"


def byte_alphabet():
    """The GPT-2 byte -> printable unicode map, so every byte is a visible vocab symbol."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


BYTE_CHAR = byte_alphabet()


def pieces(text):
    for w in SPLIT.findall(text):
        yield "".join(BYTE_CHAR[b] for b in w.encode("utf-8"))


def train(text, vocab_size, n_special=1, log=print):
    """Greedy BPE: repeatedly merge the most frequent adjacent pair (ties broken by the pair itself,
    so the result is deterministic)."""
    t0 = time.time()
    counts = collections.Counter(pieces(text))
    words = [list(w) for w in counts]
    freq = list(counts.values())
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += freq[i]
            where[p].add(i)
    want = vocab_size - 256 - n_special
    merges = []
    while len(merges) < want and pairs:
        (a, b), c = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if c < 2:
            break
        merges.append((a, b))
        ab = a + b
        for i in list(where[(a, b)]):
            w, f = words[i], freq[i]
            nw, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(ab)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            if len(nw) == len(w):
                continue
            for p in zip(w, w[1:]):
                pairs[p] -= f
                if pairs[p] <= 0:
                    del pairs[p]
            for p in zip(nw, nw[1:]):
                pairs[p] += f
                where[p].add(i)
            words[i] = nw
        pairs.pop((a, b), None)
        where.pop((a, b), None)
        if len(merges) % 500 == 0:
            log(f"  bpe: {len(merges)}/{want} merges ({time.time() - t0:.0f}s)")
    return merges


class Encoder:
    def __init__(self, merges):
        self.rank = {m: i for i, m in enumerate(merges)}
        self.vocab = {BYTE_CHAR[b]: b for b in range(256)}
        for i, (a, b) in enumerate(merges):
            self.vocab[a + b] = 256 + i
        self.eos_id = len(self.vocab)
        self._cache = {}

    def _word(self, w):
        ids = self._cache.get(w)
        if ids is not None:
            return ids
        parts = list(w)
        while len(parts) > 1:
            best, at = min((self.rank.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1))
            if best == 1 << 30:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        ids = [self.vocab[p] for p in parts]
        self._cache[w] = ids
        return ids

    def encode(self, text):
        out = []
        for w in pieces(text):
            out.extend(self._word(w))
        return out

    def decode(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        char_byte = {c: b for b, c in BYTE_CHAR.items()}
        s = "".join(inv[i] for i in ids if i != self.eos_id)
        return bytes(char_byte[c] for c in s).decode("utf-8", errors="replace")


CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}>>> {{ message['content'] }}\n"
    "{% else %}{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
)


def write_hf(merges, out_dir, model_max_length):
    enc = Encoder(merges)
    vocab = dict(enc.vocab)
    vocab[EOS] = enc.eos_id
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": enc.eos_id, "content": EOS, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": EOS, "eos_token": EOS, "pad_token": EOS, "unk_token": None,
            "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
            "model_max_length": model_max_length, "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
        }, f, indent=2)
    return enc
