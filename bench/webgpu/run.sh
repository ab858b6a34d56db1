#!/bin/bash
# On the GPU machine, from the repository root: unpack bench/webgpu/.carry, rebuild the model's
# 545 MB data file from the seeded model (python3 with torch), run the benchmark.
#   bash bench/webgpu/.carry/run.sh [bench options]      (npm run bench:webgpu -- run …)
#   bash bench/webgpu/.carry/run.sh --train [train options]   (the on-device training step, train.mjs)
# The report goes to $OUT/webgpu.json (--train: $OUT/train.json) when OUT is set (the device
# tool's output folder).
set -eo pipefail
MODE=bench
if [ "$1" = "--train" ]; then MODE=train; shift; fi
C=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$C/../../.." && pwd)
W=${WG_DIR:-/tmp/wg}
t0=$(date +%s)
# shellcheck source=runtime.sh
. "$REPO/bench/webgpu/runtime.sh"
rm -rf "$W" && mkdir -p "$W/model"
unpack_runtime "$C" "$W"
# onnxruntime-web's build: JSPI (the demo page's; Node needs --experimental-wasm-jspi) unless
# ORT_BUILD=asyncify.
NODE_FLAGS=(--experimental-wasm-jspi)
if [ "${ORT_BUILD:-jspi}" = asyncify ]; then
  NODE_FLAGS=()
  sed -i 's/ort\.jspi\.min\.mjs/ort.webgpu.min.mjs/g' "$W/node_modules/onnxruntime-web/package.json"
fi
echo "onnxruntime-web build: ${ORT_BUILD:-jspi}"
cp "$C/bench.mjs" "$C/transformers.mjs" "$C/capture.mjs" "$C/probe.mjs" "$W/"
tar -C "$W/model" -xJf "$C/model.tar.xz"
echo "unpacked in $(( $(date +%s) - t0 )) s"
PY=${PYTHON:-python3}
PYTHONPATH="$REPO/scripts" $PY "$REPO/bench/webgpu/make_model.py" unpack --dir "$W/model"
if [ "$MODE" = train ]; then
  [ -f "$W/model/model.train.onnx" ] || { echo "the carry has no model.train.onnx: npm run bench:webgpu -- build --train"; exit 2; }
  cp "$C/train.mjs" "$C/sotu.json" "$W/"
  echo "model ready after $(( $(date +%s) - t0 )) s"
  "$W/bin/node" "${NODE_FLAGS[@]}" "$W/train.mjs" --root "$W" --model "$W/model" --texts "$W/sotu.json" --out "${OUT:-$W}/train.json" "$@"
  echo "done after $(( $(date +%s) - t0 )) s"
  exit 0
fi
# The new client graph (q4/: q4w and its plain twin), built from the same seeded weights.
PYTHONPATH="$REPO/scripts" $PY "$REPO/bench/webgpu/make_model.py" client --dir "$W/model"
# The merged-R graph with its stacked weights folded in (bench/webgpu/merge_graph.py).
(cd "$W/model" && $PY "$REPO/bench/webgpu/merge_graph.py" model.onnx merged-folded.onnx --gather --fold)
echo "model ready after $(( $(date +%s) - t0 )) s"
OUTFILE=${OUT:-$W}/webgpu.json
# PROBE_GRAPHS=a.onnx,b.onnx: where a decode step goes (probe.mjs) instead of the benchmark.
if [ -n "${PROBE_GRAPHS:-}" ]; then
  "$W/bin/node" "${NODE_FLAGS[@]}" "$W/probe.mjs" --root "$W" --model "$W/model" --graphs "$PROBE_GRAPHS" --out "${OUT:-$W}/probe.json" "$@"
  echo "done after $(( $(date +%s) - t0 )) s"
  exit 0
fi
# CAPTURE_ONLY=1 skips the main table; CAPTURE_OPTS lists the optimization levels capture.mjs runs at.
[ -n "${CAPTURE_ONLY:-}" ] || "$W/bin/node" "${NODE_FLAGS[@]}" "$W/bench.mjs" --root "$W" --model "$W/model" --tjs "$W/transformers.mjs" --out "$OUTFILE" "$@"
# q4w vs q4ws uncaptured vs q4ws captured (graph capture, docs/client.md).
for opt in ${CAPTURE_OPTS:-all}; do
  "$W/bin/node" "${NODE_FLAGS[@]}" "$W/capture.mjs" --root "$W" --model "$W/model/q4" --plain model.q4wp --prompt "${CAPTURE_PROMPT:-128}" --tokens "${CAPTURE_TOKENS:-128}" \
    --opt "$opt" --out "${OUT:-$W}/capture-$opt.json" 2>&1 | tail -c 3000 || echo "capture.mjs --opt $opt failed"
done
echo "done after $(( $(date +%s) - t0 )) s"
