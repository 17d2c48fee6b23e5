#!/usr/bin/env bash
# The batched-step checks of the GPU machine (see docs/perf.md):
#   bench/step_check.sh            (binaries in $BIN, default build/bin)
# gemm_rows_test and gpu_step_test; parity of the fixtures and of the
# 0.5B/7B shapes (bench/parity.py, also at a 2048-token prompt on 0.5B) with
# --seq1-tensor-cores; then treni-step-bench on the 7B and 0.5B
# shapes: the default, --seq1-tensor-cores, --gemm-tuning and --gemm-rows 32,
# a 64-row step with a 512-token chunk with and without --chunk-flash,
# and --profile of 64 and 256 rows and of 64 rows with a 512-token chunk.
# Models are built with bench/models.py into $MODELS_DIR (default
# /tmp/models); logs go to $OUT (default ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
OUT=${OUT:-$PWD/gpu-out}
MODELS_DIR=${MODELS_DIR:-/tmp/models}
mkdir -p "$OUT"
export TRENI_CACHE_DIR=${TRENI_CACHE_DIR:-/tmp/treni-cache} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for m in qwen2.5-7b qwen2.5-0.5b; do
  [ -d "$MODELS_DIR/$m" ] || python3 -c "import sys; sys.path.insert(0, 'bench'); import models; models.build('$m', '$MODELS_DIR/$m')" \
    > "$OUT/build_$m.log" 2>&1 || echo "building $m failed (see $OUT/build_$m.log)"
done
echo "== gemm_rows_test"; timeout 120 "$BIN/gemm_rows_test" 2>&1 | tail -3
echo "== gpu_step_test (fixtures and the 0.5B shape, whose head dim takes the tensor-core decode attention)"
TRENI_STEP_TEST_MODELS="$MODELS_DIR/qwen2.5-0.5b" TRENI_FIXTURES_DIR=$PWD/test/fixtures timeout 400 "$BIN/gpu_step_test" 2>&1 | tail -3
echo "== parity"
timeout 300 python3 bench/parity.py --treni "$BIN/treni" --models-dir "$MODELS_DIR" --out "$OUT/parity" \
  --treni-arg=--seq1-tensor-cores qwen2 qwen3 llama qwen2.5-0.5b qwen2.5-7b 2>&1 | tail -6
timeout 120 python3 bench/parity.py --treni "$BIN/treni" --models-dir "$MODELS_DIR" --prompt-length 2048 \
  --treni-arg=--seq1-tensor-cores --out "$OUT/parity_long" qwen2.5-0.5b 2>&1 | tail -2
S="$BIN/treni-step-bench"
for m in qwen2.5-7b qwen2.5-0.5b; do
  for flags in "" "--seq1-tensor-cores" "--gemm-tuning" "--seq1-tensor-cores --gemm-tuning"; do
    echo "== step $m $flags"; timeout 120 "$S" "$MODELS_DIR/$m" --context 512 $flags 2>&1 | grep STEP
  done
  echo "== step $m --gemm-rows 32"
  timeout 120 "$S" "$MODELS_DIR/$m" --context 512 --rows 2,4,8,16,32 --gemm-rows 32 2>&1 | grep STEP
  for flags in "" "--chunk-flash"; do
    echo "== step $m --chunk 512 $flags"
    timeout 120 "$S" "$MODELS_DIR/$m" --context 512 --rows 64 --chunk 512 $flags 2>&1 | grep STEP
  done
done
for flags in "" "--seq1-tensor-cores"; do
  echo "== profile qwen2.5-7b $flags"
  timeout 120 "$S" "$MODELS_DIR/qwen2.5-7b" --context 512 --rows 64,256 --profile --iterations 5 $flags 2>&1 | tee "$OUT/profile$flags.log" | grep -E "PROFILE|attention|gemm|sum of"
  timeout 120 "$S" "$MODELS_DIR/qwen2.5-7b" --context 512 --rows 64 --chunk 512 --profile --iterations 5 $flags 2>&1 | grep -E "PROFILE|attention|gemm |sum of"
done
