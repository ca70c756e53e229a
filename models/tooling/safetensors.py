"""Reads and writes Hugging Face safetensors checkpoints, from the format's specification
(github.com/huggingface/safetensors, "Format"), with numpy alone.

library use:
  ckpt = open_checkpoint(dir)          model.safetensors, or the shards of model.safetensors.index.json
  ckpt.names(); ckpt.info(name) -> Entry(name, dtype, shape, file, nbytes); ckpt.read(name) -> float32
  write(path, {name: array}, "F32" | "F16" | "BF16"); write_sharded(dir, tensors, dtype, shards)

A file is: 8 bytes, the header's length N (little-endian u64); N bytes of JSON,
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}; then the data
area, every tensor's bytes little-endian and row-major at [begin, end) of it.

Why a reader of our own: Debian packages neither safetensors nor transformers, and the conversion
must run on the python3-numpy + python3-onnx the project already needs. Every header is checked when
the checkpoint is opened (before any graph is written), and tensors are read one at a time through a
memory map, so a checkpoint is never held in memory twice.
"""
import json
import math
import os
from dataclasses import dataclass

import numpy as np

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# bytes per element of every dtype the format defines: headers naming any of them are valid even
# though only the float ones are read (a checkpoint may carry integer buffers nobody needs)
ITEM_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
READABLE = ("F32", "F16", "BF16")
# the reference implementation refuses headers past 100 MB; a real one is a few hundred KB
MAX_HEADER = 100_000_000


class SafetensorsError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or of a kind this reader does not read."""


@dataclass(frozen=True)
class Entry:
    name: str
    dtype: str
    shape: tuple
    file: str         # absolute path of the file holding it
    offset: int       # of its first byte in that file
    nbytes: int


def _corrupt(path, why):
    return SafetensorsError(f"{path}: {why}: the file is truncated or corrupt")


def read_header(path):
    """{name: Entry} of one file, every entry checked against the file's size; plus its metadata."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _corrupt(path, f"{size} bytes, shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER or 8 + n > size:
                raise _corrupt(path, f"header length {n} runs past the end of the file ({size} bytes)")
            raw = f.read(n)
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot read: {e.strerror}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(path, f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "the header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    data_start, data_size = 8 + n, size - 8 - n
    entries, spans = {}, []
    for name, t in header.items():
        if not (isinstance(t, dict) and isinstance(t.get("dtype"), str) and isinstance(t.get("shape"), list)
                and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2
                and all(isinstance(x, int) and x >= 0 for x in t["shape"] + t["data_offsets"])):
            raise _corrupt(path, f"tensor {name}: the header entry is not {{dtype, shape, data_offsets: [begin, end]}}")
        dtype, shape, (begin, end) = t["dtype"], tuple(t["shape"]), t["data_offsets"]
        if dtype not in ITEM_SIZE:
            raise SafetensorsError(f"{path}: tensor {name} has dtype {dtype!r}, which the safetensors format does not "
                                   f"define (expected one of {', '.join(ITEM_SIZE)})")
        if not begin <= end <= data_size:
            raise _corrupt(path, f"tensor {name}: data_offsets [{begin}, {end}] lie outside the data area of {data_size} bytes")
        want = math.prod(shape) * ITEM_SIZE[dtype]
        if end - begin != want:
            raise _corrupt(path, f"tensor {name}: {end - begin} bytes at data_offsets [{begin}, {end}], "
                                 f"but {dtype} {list(shape)} takes {want}")
        entries[name] = Entry(name, dtype, shape, os.path.abspath(path), data_start + begin, end - begin)
        spans.append((begin, end, name))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise _corrupt(path, f"tensors {n0} [{b0}, {e0}] and {n1} [{b1}, {e1}] overlap")
    return entries, meta


def to_float32(entry):
    """One tensor as a float32 array of its shape, read through a memory map."""
    if entry.dtype not in READABLE:
        raise SafetensorsError(f"{entry.file}: tensor {entry.name} is {entry.dtype}; only {', '.join(READABLE)} "
                               "tensors are read")
    if entry.nbytes == 0:
        return np.zeros(entry.shape, np.float32)
    raw = np.memmap(entry.file, dtype=np.uint8, mode="r", offset=entry.offset, shape=(entry.nbytes,))
    try:
        if entry.dtype == "F32":
            out = raw.view("<f4").astype(np.float32)
        elif entry.dtype == "F16":
            out = raw.view("<f2").astype(np.float32)
        else:  # bfloat16 is the top half of a float32: its bits shifted into the high 16 bits
            out = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    finally:
        del raw
    return out.reshape(entry.shape)


class Checkpoint:
    """The tensors of a checkpoint folder, by name, every file's header checked."""

    def __init__(self, folder):
        self.folder = os.path.abspath(folder)
        self.files = []           # the safetensors files, absolute, in shard order
        self.entries = {}         # name -> Entry
        self.metadata = {}        # file -> its __metadata__
        index = os.path.join(self.folder, INDEX)
        if os.path.exists(index):
            self._open_index(index)
        elif os.path.exists(os.path.join(self.folder, SINGLE)):
            self._add(os.path.join(self.folder, SINGLE))
        else:
            others = sorted(f for f in os.listdir(self.folder) if f.endswith((".bin", ".pt", ".pth", ".gguf", ".safetensors")))
            found = f" (found {', '.join(others[:4])}: convert those to safetensors first)" if others else ""
            raise SafetensorsError(f"{self.folder}: no {SINGLE} or {INDEX}{found}")

    def _open_index(self, index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise SafetensorsError(f"{index}: not a safetensors index (a JSON object with a weight_map): {e}") from None
        by_file = {}
        for name, file in weight_map.items():
            by_file.setdefault(file, []).append(name)
        for file in sorted(by_file):
            path = os.path.join(self.folder, file)
            if not os.path.exists(path):
                raise SafetensorsError(f"{index} lists {file} (holding {by_file[file][0]} and {len(by_file[file]) - 1} more), "
                                       "which is not in the folder")
            held = self._add(path)
            for name in by_file[file]:
                if name not in held:
                    raise SafetensorsError(f"{index} puts tensor {name} in {file}, but that file does not hold it: "
                                           "the shard is not the one the index was written for")
        # tensors a shard holds beyond what the index lists are still readable: the index is a map, not a filter

    def _add(self, path):
        entries, meta = read_header(path)
        for name, e in entries.items():
            if name in self.entries:
                raise SafetensorsError(f"tensor {name} is in both {self.entries[name].file} and {path}")
        self.entries.update(entries)
        self.files.append(os.path.abspath(path))
        self.metadata[os.path.abspath(path)] = meta
        return entries

    def names(self):
        return list(self.entries)

    def info(self, name):
        return self.entries[name]

    def read(self, name):
        return to_float32(self.entries[name])


def open_checkpoint(folder):
    return Checkpoint(folder)


def encode(arr, dtype):
    """Little-endian bytes of `arr` in `dtype` (F32, F16, or BF16 rounded to nearest even)."""
    a = np.ascontiguousarray(arr, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "BF16":
        bits = a.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return rounded.astype("<u2").tobytes()
    raise ValueError(f"dtype {dtype!r}: the writer writes {', '.join(READABLE)}")


def write(path, tensors, dtype="F32", metadata=None):
    """One safetensors file of `tensors` ({name: array}, written in that order) as `dtype`; written
    beside `path` and renamed into place."""
    if dtype not in READABLE:
        raise ValueError(f"dtype {dtype!r}: the writer writes {', '.join(READABLE)}")
    header, offset = {}, 0
    for name, a in tensors.items():
        n = int(np.prod(np.shape(a), dtype=np.int64)) * ITEM_SIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(np.shape(a)), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data area starts 8-byte aligned, as the reference writer does
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for a in tensors.values():
            f.write(encode(a, dtype))
    os.replace(tmp, path)


def write_sharded(folder, tensors, dtype="F32", shards=2):
    """`tensors` over `shards` files model-0000i-of-0000n.safetensors (consecutive runs of about
    equal size) and the index that maps every name to its file. Returns the file names."""
    names = list(tensors)
    sizes = [int(np.prod(np.shape(tensors[n]), dtype=np.int64)) * ITEM_SIZE[dtype] for n in names]
    total, per = sum(sizes), max(1, -(-sum(sizes) // shards))
    groups, acc = [[] for _ in range(shards)], 0
    for name, size in zip(names, sizes):
        groups[min(shards - 1, acc // per)].append(name)
        acc += size
    groups = [g for g in groups if g]
    files = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map = {}
    for file, group in zip(files, groups):
        write(os.path.join(folder, file), {n: tensors[n] for n in group}, dtype, metadata={"format": "pt"})
        weight_map.update({n: file for n in group})
    with open(os.path.join(folder, INDEX), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")
    return files
