"""Collect the training corpus from Debian packages, deterministically.

Sources (both PSF-licensed, see models/README.md):
  - Python 3.11 standard library sources   (/usr/lib/python3.11, package libpython3.11-stdlib)
  - reST sources of the Python documentation (/usr/share/doc/python3.11/html/_sources, python3.11-doc)

Each file is one document. Documents are split into train / validation by a stable hash of their
path (about 2% held out), so the split never depends on file-system order.
"""
import hashlib
import json
import os
import subprocess

STDLIB = "/usr/lib/python3.11"
DOCS = "/usr/share/doc/python3.11/html/_sources"
PACKAGES = ["libpython3.11-stdlib", "python3.11-doc"]
VALID_EVERY = 50  # one document in VALID_EVERY goes to validation


def _stdlib_files():
    out = []
    for root, dirs, files in os.walk(STDLIB):
        rel = os.path.relpath(root, STDLIB)
        parts = rel.split(os.sep)
        # tests are huge and repetitive; third-party and build config are not the stdlib
        if parts[0] in ("test", "site-packages", "dist-packages") or parts[0].startswith("config-") or "tests" in parts:
            dirs[:] = []
            continue
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files) if f.endswith(".py")]
    return out


def _doc_files():
    out = []
    for root, dirs, files in os.walk(DOCS):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files) if f.endswith(".rst.txt")]
    return out


def package_versions():
    vers = {}
    for p in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True)
        vers[p] = r.stdout.strip() or None
    return vers


def is_validation(path):
    return int(hashlib.sha1(path.encode()).hexdigest(), 16) % VALID_EVERY == 0


def collect():
    """Returns (train_docs, valid_docs, manifest); docs are lists of str."""
    files = _stdlib_files() + _doc_files()
    if not files:
        raise SystemExit("corpus: no source files found; install " + " ".join(PACKAGES))
    train, valid = [], []
    n_bytes = {"stdlib": 0, "docs": 0}
    for f in files:
        with open(f, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
        n_bytes["docs" if f.startswith(DOCS) else "stdlib"] += len(raw)
        (valid if is_validation(f) else train).append(text)
    manifest = {
        "packages": package_versions(),
        "files": len(files),
        "bytes": n_bytes,
        "train_docs": len(train),
        "valid_docs": len(valid),
        "split": f"sha1(path) % {VALID_EVERY} == 0 -> validation",
    }
    return train, valid, manifest


if __name__ == "__main__":
    t, v, m = collect()
    print(json.dumps(m, indent=2))
