#!/bin/bash
# Call B of the SOTU quality run on the GPU machine, from the repository root, carrying .carry2
# (bench/sotu/carry.sh builds it). Call A, on the same warm machine just before, carried .carry1 and ran
#   mkdir -p /root/keep && cp -r .carry1/. /root/keep/
# This joins the two GGUF halves, checks the sha256, and runs the whole grid of bench/quality_sotu.py;
# results.json and the shipped set's adapters go to $OUT (printed rows as soon as each method ends).
#   set -o pipefail; bash bench/sotu/gpu.sh [more quality_sotu options] 2>&1 | tee $OUT/log
set -euo pipefail
cd "$(dirname "$0")/../.."
KEEP=${KEEP:-/root/keep}
OUT=${OUT:-out/sotu}
PY=${PYTHON:-python3}
G=$KEEP/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$KEEP/gguf.part1" ] || { echo "$KEEP/gguf.part1 is missing: run call A first" >&2; exit 2; }
[ -f .carry2/gguf.part2 ] || { echo ".carry2/gguf.part2 is missing: carry .carry2" >&2; exit 2; }
cat "$KEEP/gguf.part1" .carry2/gguf.part2 > "$G"
want=$(cut -d' ' -f1 bench/sotu/gguf.sha256)
got=$(sha256sum "$G" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "joined GGUF: sha256 $got, expected $want" >&2; exit 3; }
echo "gguf: $(stat -c %s "$G") bytes, sha256 ok"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true
export PYTHONPATH="$PWD/scripts:$PWD/.carry2/pylib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
# --time-limit counts from the script's start (after imports); timeout is the backstop (9 min in all).
exec timeout -s INT "${SOTU_TIMEOUT:-530}" "$PY" bench/quality_sotu.py --gguf "$G" --data .carry2/sotu.json.gz \
  --out-dir "$OUT" --time-limit "${SOTU_TIME_LIMIT:-460}" --compare-naive "$@"
