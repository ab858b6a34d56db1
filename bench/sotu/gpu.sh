#!/bin/bash
# Call B of the SOTU quality run on the GPU machine, from the repository root, carrying .carry2
# (bench/sotu/carry.sh builds it). Call A, on the same warm machine just before, carried .carry1 and ran
#   mkdir -p /root/keep && cp -r .carry1/. /root/keep/
# This joins the two GGUF halves, checks the sha256, and runs the whole grid of bench/quality_sotu.py,
# or with `quality` as first argument the protocol of bench/quality.py (both domains, all sizes).
# $OUT gets three files, in this order: log (everything printed, as it is printed), results.json
# (rewritten after every method) and, last, adapters.tar (the shipped set's adapters, one per user,
# written outside $OUT during the run and packed at the end; SOTU_ADAPTERS=0 leaves it out). The GPU
# machine returns at most 8 files from $OUT, so one file per user there would crowd out the rest.
#   bash bench/sotu/gpu.sh [more quality_sotu options]
#   bash bench/sotu/gpu.sh quality [more bench/quality.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
KEEP=${KEEP:-/root/keep}
OUT=${OUT:-out/sotu}
PY=${PYTHON:-python3}
G=$KEEP/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT"
say() { echo "$*" | tee -a "$OUT/log"; }
[ -f "$KEEP/gguf.part1" ] || { say "$KEEP/gguf.part1 is missing: run call A first" >&2; exit 2; }
[ -f .carry2/gguf.part2 ] || { say ".carry2/gguf.part2 is missing: carry .carry2" >&2; exit 2; }
cat "$KEEP/gguf.part1" .carry2/gguf.part2 > "$G"
want=$(cut -d' ' -f1 bench/sotu/gguf.sha256)
got=$(sha256sum "$G" | cut -d' ' -f1)
[ "$got" = "$want" ] || { say "joined GGUF: sha256 $got, expected $want" >&2; exit 3; }
say "gguf: $(stat -c %s "$G") bytes, sha256 ok"
{ nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true; } | tee -a "$OUT/log"
export PYTHONPATH="$PWD/scripts:$PWD/.carry2/pylib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sotu-adapters.XXXXXX")
# --time-limit counts from the script's start (after imports); timeout is the backstop (9 min in all).
set +e
if [ "${1:-}" = quality ]; then
  shift
  timeout -s INT "${SOTU_TIMEOUT:-530}" "$PY" bench/quality.py --gguf "$G" --data .carry2/corpora.json.gz \
    --out-dir "$OUT" --time-limit "${SOTU_TIME_LIMIT:-460}" "$@" 2>&1 | tee -a "$OUT/log"
else
  timeout -s INT "${SOTU_TIMEOUT:-530}" "$PY" bench/quality_sotu.py --gguf "$G" --data .carry2/corpora.json.gz \
    --out-dir "$OUT" --adapter-dir "$WORK/adapters" --time-limit "${SOTU_TIME_LIMIT:-460}" --compare-naive "$@" \
    2>&1 | tee -a "$OUT/log"
fi
rc=${PIPESTATUS[0]}
set -e
rm -f "$OUT/results.json.tmp"
n=$( (find "$WORK/adapters" -name "*.safetensors" 2>/dev/null || true) | wc -l)
if [ "${SOTU_ADAPTERS:-1}" != 0 ] && [ "$n" -gt 0 ]; then
  tar -C "$WORK" -cf "$OUT/adapters.tar" adapters
  say "adapters.tar: $n adapters, $(stat -c %s "$OUT/adapters.tar") bytes"
fi
rm -rf "$WORK"
say "quality_sotu exit status $rc"
exit "$rc"
