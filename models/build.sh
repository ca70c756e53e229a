#!/usr/bin/env bash
# Rebuilds the default model family from Debian-packaged text, reproducibly:
#   corpus + BPE tokenizer -> target training (resumable) -> target graphs (fp32, int8, int4) -> ADED trigram prior
#   -> Node-side checks -> Medusa and Hydra heads -> Kangaroo adapter and split graphs -> Chimera
#   -> latency measurements.
# usage: npm run models:build   (or: bash models/build.sh [--steps N] [--head-steps N] [--kangaroo-steps N])
# Work files (token arrays, checkpoint, logs) go to models/.work/ (git-ignored); rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=1000
HEAD_STEPS=600
KANGAROO_STEPS=600
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --head-steps) HEAD_STEPS="$2"; shift 2 ;;
    --kangaroo-steps) KANGAROO_STEPS="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
PY=/usr/bin/python3   # Debian's python with python3-torch; the first python3 on PATH may be another
WORK=models/.work
OUT=models/specserve-tiny
PKGS=(python3-torch python3-onnx python3-numpy python3-regex libopenblas0-pthread python3.11-doc libpython3.11-stdlib)

missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[build] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  # without libopenblas0-pthread Debian's torch falls back to the reference BLAS (~75x slower)
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

mkdir -p "$WORK" "$OUT"
t0=$(date +%s)
if [ ! -f "$WORK/train.u16" ] || [ ! -f "$OUT/tokenizer.json" ]; then
  $PY models/tooling/prepare.py "$WORK" "$OUT"
else
  echo "[build] corpus and tokenizer already prepared ($WORK/train.u16)"
fi
$PY models/tooling/train.py "$WORK" --steps "$STEPS" --seq 1024 --batch 4 --lr 2e-3
# hidden_shallow after block 1: Kangaroo's exit layer (an adapter on layer 1 agreed with the target as
# often as one on layer 2 at equal training, for half the drafting cost; models/README.md)
$PY models/tooling/export.py "$WORK" "$OUT" --shallow-layers 1
$PY models/tooling/write_graphs.py "$OUT"    # the 8- and 4-bit target graphs
$PY models/tooling/trigram.py "$WORK" "$OUT"
cp "$WORK/train_log.jsonl" "$OUT/train_log.jsonl"
cp "$WORK/corpus.json" "$OUT/corpus.json"
node --import tsx models/tooling/check.ts "$OUT"
# draft heads (self-distilled on the frozen target), then this machine's latency figures
# the drafter scripts' defaults follow the model now (draft vocabulary from the text, Chimera's MLP
# from the target's, every core); specserve-tiny's drafters were built with these
$PY models/tooling/heads.py "$WORK" "$OUT" --kind medusa --steps "$HEAD_STEPS" --draft-vocab 2048
$PY models/tooling/heads.py "$WORK" "$OUT" --kind hydra --steps "$HEAD_STEPS" --draft-vocab 2048
cp "$WORK/medusa_log.jsonl" "$OUT/heads/medusa_log.jsonl"
cp "$WORK/hydra_log.jsonl" "$OUT/heads/hydra_log.jsonl"
$PY models/tooling/kangaroo.py "$WORK" "$OUT" --steps "$KANGAROO_STEPS" --threads 2 --draft-vocab 2048
$PY models/tooling/write_graphs.py "$OUT"    # Kangaroo's split graphs as the target's own kernels, every dtype
$PY models/tooling/chimera.py "$WORK" "$OUT" --draft-vocab 2048 --ffn 512 --threads 1
cp "$WORK/chimera_log.jsonl" "$OUT/chimera/chimera_log.jsonl"
cp "$WORK/kangaroo_log.jsonl" "$OUT/kangaroo/kangaroo_log.jsonl"
node --import tsx models/tooling/measure.ts "$OUT"
echo "[build] done in $(( $(date +%s) - t0 ))s -> $OUT"
