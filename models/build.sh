#!/usr/bin/env bash
# Rebuilds the default model family from Debian-packaged text, reproducibly:
#   corpus + BPE tokenizer -> target training (resumable) -> Hugging Face checkpoint -> npm run convert
#   (fp32, int8, int4 graphs) -> reference outputs, LANTERN, held-out text -> Node-side checks
#   -> Medusa and Hydra heads, Kangaroo adapter and split graphs, Chimera, ADED prior
#   (train_drafters.py) -> latency measurements.
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
# from here on, the path any user's checkpoint takes: a Hugging Face checkpoint, npm run convert,
# then the drafters (train_drafters.py, which npm run train-drafters runs after tokenizing the
# user's text; here the token files are prepare.py's)
$PY models/tooling/export.py "$WORK" "$WORK/hf" --tokenizer-from "$OUT"
# hidden_shallow after block 1: Kangaroo's exit layer (an adapter on layer 1 agreed with the target as
# often as one on layer 2 at equal training, for half the drafting cost; models/README.md)
node --import tsx scripts/convert.ts --from "$WORK/hf" --to "$OUT" --dtype fp32,int8,int4 --shallow-layers 1 --force
$PY models/tooling/tiny_files.py "$WORK" "$OUT"   # reference.json, LANTERN's neighbours, heldout.txt
cp "$WORK/train_log.jsonl" "$OUT/train_log.jsonl"
cp "$WORK/corpus.json" "$OUT/corpus.json"
node --import tsx models/tooling/check.ts "$OUT"
# draft heads (self-distilled on the frozen target). The scripts' defaults follow the model (draft
# vocabulary from the text, Chimera's MLP from the target's, every core); specserve-tiny's drafters
# were built with these.
DRAFTERS=($PY models/tooling/train_drafters.py "$OUT" --work "$WORK" --draft-vocab 2048)
"${DRAFTERS[@]}" --kinds medusa,hydra --steps "$HEAD_STEPS"
"${DRAFTERS[@]}" --kinds kangaroo --steps "$KANGAROO_STEPS" --threads 2
"${DRAFTERS[@]}" --kinds chimera --chimera-ffn 512 --threads 1
"${DRAFTERS[@]}" --kinds aded
node --import tsx models/tooling/measure.ts "$OUT"
echo "[build] done in $(( $(date +%s) - t0 ))s -> $OUT"
