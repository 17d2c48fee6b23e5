#!/usr/bin/env bash
# Everything the GPU machine checks, in one go (see docs/perf.md):
#   bench/gpu_check.sh [cache|parity|bench|goldens|prefill|longparity|attention|all] [MODEL ...]
# attention: treni-attention-bench (next to $TRENI, or $ATTENTION_BENCH; extra
#   flags in $ATTENTION_ARGS, e.g. "--arch sm_90" for the mma.sync path) on
# the prefill shapes: the flash kernel's time and TFLOP/s, checked against the
# exact kernel.
# goldens: the tokenizer and chat-template expectations from Hugging Face
# `tokenizers` / transformers, written to $OUT (needs $TOKENIZERS, default
# build/tokenizers, or .gpu/tokenizers.tar.gz unpacked there).
# prefill: bench/prefill_bench.py, TTFT vs prompt length against transformers
# (MODELs, default the three Qwen2.5 shapes; PREFILL_LENGTHS, PREFILL_CHUNK
# when set); prefill.json and prefill_ttft.png go to $OUT.
# longparity: bench/parity.py --prompt-length ${PARITY_LEN:-2048} (and
# --prefill-chunk $PARITY_CHUNK when set) on the MODELs (default the built
# shapes: the fixtures' max_position_embeddings is 512). Neither is in `all`.
# Needs build/bin/treni (built on the dev machine: it is self-contained) and
# python3 with torch + transformers. Logs go to $OUT (default ./gpu-out); the
# short tables come last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export TRENI_CACHE_DIR=${TRENI_CACHE_DIR:-/tmp/treni-cache}
what=${1:-all}
shift || true
models_parity=("$@")
[ ${#models_parity[@]} -eq 0 ] && models_parity=(qwen2 llama qwen3 qwen2.5-0.5b qwen3-0.6b llama-3.2-1b qwen2.5-3b qwen2.5-7b)
models_bench=(qwen2.5-0.5b qwen2.5-3b qwen2.5-7b)
models_prefill=("$@")
[ ${#models_prefill[@]} -eq 0 ] && models_prefill=("${models_bench[@]}")
models_long=("$@")
[ ${#models_long[@]} -eq 0 ] && models_long=(qwen2.5-0.5b qwen3-0.6b llama-3.2-1b qwen2.5-3b qwen2.5-7b)

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
ldd "${TRENI:-build/bin/treni}" | tee "$OUT/ldd.txt" | grep -E "not found|LLVM|MLIR|absl" && echo "unexpected dynamic deps"

TRENI=${TRENI:-build/bin/treni}
status=0
if [ "$what" = cache ] || [ "$what" = all ]; then
  bench/cache_check.sh "$TRENI" test/fixtures/qwen2 2>&1 | tee "$OUT/cache.log" || status=1
fi
if [ "$what" = goldens ] || [ "$what" = all ]; then
  tokenizers=${TOKENIZERS:-build/tokenizers}
  if [ ! -d "$tokenizers" ] && [ -f .gpu/tokenizers.tar.gz ]; then
    mkdir -p "$tokenizers" && tar -xzf .gpu/tokenizers.tar.gz -C "$tokenizers"
  fi
  python3 test/tokenizers/make_expected.py "$tokenizers" "$OUT/tokenizer_expected.json" \
    2>&1 | tee "$OUT/goldens.log" || status=1
  python3 test/chat/make_expected.py "$tokenizers" "$OUT/chat_expected.json" \
    2>&1 | tee -a "$OUT/goldens.log" || status=1
fi
if [ "$what" = parity ] || [ "$what" = all ]; then
  python3 bench/parity.py --treni "$TRENI" --out "$OUT" "${models_parity[@]}" \
    2>&1 | tee "$OUT/parity.log" || status=1
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  python3 bench/bench.py --treni "$TRENI" --out "$OUT" "${models_bench[@]}" \
    2>&1 | tee "$OUT/bench.log" || status=1
fi
if [ "$what" = prefill ]; then
  prefill_args=()
  [ -n "${PREFILL_LENGTHS:-}" ] && prefill_args+=(--lengths "$PREFILL_LENGTHS")
  [ -n "${PREFILL_CHUNK:-}" ] && prefill_args+=(--prefill-chunk "$PREFILL_CHUNK")
  python3 bench/prefill_bench.py --treni "$TRENI" --out "$OUT" "${prefill_args[@]}" "${models_prefill[@]}" \
    2>&1 | tee "$OUT/prefill.log" || status=1
fi
if [ "$what" = attention ]; then
  bench_bin=${ATTENTION_BENCH:-$(dirname "$TRENI")/treni-attention-bench}
  {
    # heads kv-heads head-dim rows start dtype: the Qwen2.5-0.5B/3B/7B and
    # Qwen3-0.6B prefill shapes, a chunk against a filled cache, odd sizes.
    while read -r h kv d rows start dtype; do
      "$bench_bin" --heads "$h" --kv-heads "$kv" --head-dim "$d" --rows "$rows" \
        --start "$start" --dtype "$dtype" --iterations 10 ${ATTENTION_ARGS:-}
    done <<'SHAPES'
28 4 128 8192 0 bf16
16 2 128 8192 0 bf16
14 2 64 8192 0 bf16
16 8 128 8192 0 bf16
28 4 128 2048 0 bf16
28 4 128 2048 6144 bf16
14 2 80 1000 0 f16
12 4 96 77 5 bf16
16 8 128 3 0 f16
SHAPES
  } 2>&1 | tee "$OUT/attention.log"
  grep -q "MISMATCH\|error" "$OUT/attention.log" && status=1
fi
if [ "$what" = longparity ]; then
  long_args=(--prompt-length "${PARITY_LEN:-2048}")
  [ -n "${PARITY_CHUNK:-}" ] && long_args+=(--prefill-chunk "$PARITY_CHUNK")
  python3 bench/parity.py --treni "$TRENI" --out "$OUT" "${long_args[@]}" "${models_long[@]}" \
    2>&1 | tee "$OUT/longparity.log" || status=1
fi
echo
grep -h "^CACHECHECK" "$OUT/cache.log" 2>/dev/null
grep -h "^PARITY" "$OUT/parity.log" 2>/dev/null
grep -h "^PARITY" "$OUT/longparity.log" 2>/dev/null
grep -h "^BENCH\|device-to-device" "$OUT/bench.log" 2>/dev/null
grep -h "^PREFILL" "$OUT/prefill.log" 2>/dev/null
grep -h "^ATTENTION" "$OUT/attention.log" 2>/dev/null
exit $status
