#!/bin/bash
# The last call of the Gemma 3 270M quality run on the GPU machine, from the repository root, carrying
# .carry-g6 (bench/gemma3/carry.sh builds it). Calls 1-5 on the same warm machine just before each ran
#   mkdir -p /root/keep && cp .carry-g<n>/gguf.part<n> /root/keep/
# This joins the six pieces, checks the sha256 and runs bench/quality.py on models/gemma3-270m (its committed
# factors are the shipped set). $OUT gets log and results.json.
#   bash bench/gemma3/gpu.sh [more bench/quality.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
KEEP=${KEEP:-/root/keep}
OUT=${OUT:-out/gemma3}
PY=${PYTHON:-python3}
PARTS=6
G=$KEEP/gemma-3-270m-q4_k_m.gguf
mkdir -p "$OUT" "$KEEP"
say() { echo "$*" | tee -a "$OUT/log"; }
cp ".carry-g$PARTS/gguf.part$PARTS" "$KEEP/" 2>/dev/null || { say ".carry-g$PARTS is missing: carry it" >&2; exit 2; }
for n in $(seq 1 $PARTS); do
  [ -f "$KEEP/gguf.part$n" ] || { say "$KEEP/gguf.part$n is missing: run call $n first" >&2; exit 2; }
done
cat $(for n in $(seq 1 $PARTS); do echo "$KEEP/gguf.part$n"; done) > "$G"
want=$(cut -d' ' -f1 bench/gemma3/gguf.sha256)
got=$(sha256sum "$G" | cut -d' ' -f1)
[ "$got" = "$want" ] || { say "joined GGUF: sha256 $got, expected $want" >&2; exit 3; }
say "gguf: $(stat -c %s "$G") bytes, sha256 ok"
{ nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true; } | tee -a "$OUT/log"
export PYTHONPATH="$PWD/scripts:$PWD/.carry-g$PARTS/pylib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
set +e
timeout -s INT "${GEMMA_TIMEOUT:-420}" "$PY" bench/quality.py --gguf "$G" --model-dir models/gemma3-270m \
  --data ".carry-g$PARTS/corpora.json.gz" --out-dir "$OUT" --time-limit "${GEMMA_TIME_LIMIT:-360}" "$@" 2>&1 | tee -a "$OUT/log"
rc=${PIPESTATUS[0]}
set -e
rm -f "$OUT/results.json.tmp"
say "quality exit status $rc"
exit "$rc"
