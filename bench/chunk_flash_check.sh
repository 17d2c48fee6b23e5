#!/usr/bin/env bash
# The open --chunk-flash fault (docs/perf.md, seventh session): `treni serve
# --chunk-flash` under 64 concurrent streamed 512-token prompts hit
# cudaErrorIllegalAddress on the 7B shape. On the GPU machine:
#   bench/chunk_flash_check.sh     (binaries in $BIN, default build/bin)
# serves the 0.5B and 7B shapes with --chunk-flash under that load (64
# streams, 512 in, 16 out; KV pools of 2000 and 600 blocks, the second
# preempting), with --no-prefix-cache, then once under compute-sanitizer
# (memcheck names the faulting kernel and address). Prints each load's
# SERVE row and the distinct errors of the server's log; logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
OUT=${OUT:-$PWD/gpu-out}
MODELS_DIR=${MODELS_DIR:-/tmp/models}
TOKENIZER=${TOKENIZER:-}
mkdir -p "$OUT"
export TRENI_CACHE_DIR=${TRENI_CACHE_DIR:-/tmp/treni-cache} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for m in qwen2.5-0.5b qwen2.5-7b; do
  [ -d "$MODELS_DIR/$m" ] || python3 -c "import sys; sys.path.insert(0, 'bench'); import models; models.build('$m', '$MODELS_DIR/$m')" \
    > "$OUT/build_$m.log" 2>&1 || echo "building $m failed (see $OUT/build_$m.log)"
done
tok=(); [ -n "$TOKENIZER" ] && tok=(--tokenizer "$TOKENIZER")
# load MODEL PORT KV_BLOCKS [serve flags...]; $WRAP runs the server (sanitizer).
load() {
  local model=$1 port=$2 blocks=$3; shift 3
  ${WRAP:-} "$BIN/treni" serve "$MODELS_DIR/$model" --device gpu "${tok[@]}" --max-seq 2048 \
    --kv-blocks "$blocks" --max-num-seqs 256 --queue-size 1024 --port "$port" --chunk-flash "$@" \
    > "$OUT/serve_$port.log" 2>&1 &
  local server=$!
  for _ in $(seq 300); do curl -s "localhost:$port/health" > /dev/null && break; sleep 1; done
  timeout "${LOAD_TIMEOUT:-90}" python3 bench/serve_bench.py --url "http://127.0.0.1:$port" \
    --model "$MODELS_DIR/$model" --concurrency 64 --requests-per-level 64 --input-len 512 \
    --output-len "${OUTPUT_LEN:-16}" --ignore-eos --timeout 120 2>&1 | grep -E "^SERVE( |-ERR)" | tail -2
  kill "$server"; wait "$server" 2> /dev/null
  grep -i error "$OUT/serve_$port.log" | sort | uniq -c | head -3
}
echo "== 0.5B, 2000 blocks"; load qwen2.5-0.5b 18080 2000
echo "== 0.5B, 600 blocks (preemption)"; load qwen2.5-0.5b 18081 600
echo "== 7B, 2000 blocks"; load qwen2.5-7b 18082 2000
echo "== 7B, 2000 blocks, no prefix cache"; load qwen2.5-7b 18083 2000 --no-prefix-cache
echo "== 7B under compute-sanitizer (memcheck)"
WRAP="/usr/local/cuda/bin/compute-sanitizer --print-limit 4" LOAD_TIMEOUT=240 OUTPUT_LEN=2 \
  load qwen2.5-7b 18084 2000
grep -E "Invalid|at 0x|by thread|Address|=====" "$OUT/serve_18084.log" | head -30
