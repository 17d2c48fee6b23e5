#!/usr/bin/env bash
# A/B of every fusion pass on the GPU machine, in one run: decode tok/s and
# TTFT (32-token prompt, 128 new tokens, median of 5) with all passes, with
# each pass disabled, with all of them disabled, with treni-fuse-matvec's
# folds off (plain matvec kernels), with programmatic launch (--no-pdl)
# switched off and with each decode step's token read before the next step
# is enqueued (--no-async-decode). Then a long-context check of
# treni-specialize-seq1-attention: logits of 64 decode steps after a
# 1500-token prompt, with and without the pass.
#   bench/ab.sh [--runtime] [MODEL ...]   (--runtime: only the matvec folds and PDL)
set -uo pipefail
cd "$(dirname "$0")/.."
TRENI=${TRENI:-build/bin/treni}
runtime_only=0
if [ "${1:-}" = --runtime ]; then runtime_only=1; shift; fi
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(qwen2.5-0.5b qwen2.5-3b qwen2.5-7b)
passes=(treni-fuse-qkv-split-bias treni-fuse-ffn-act treni-fuse-residual-norm treni-specialize-seq1-attention treni-fuse-matvec)
export TRENI_CACHE_DIR=${TRENI_CACHE_DIR:-/tmp/treni-ab-cache}
build() { python3 -c "import sys; sys.path.insert(0, 'bench'); import models; print(models.build('$1', '/tmp/models/$1'))" 2>/dev/null | tail -1; }
measure() { # dir label args...
  local dir=$1 label=$2; shift 2
  "$TRENI" run "$dir" --device gpu --prompt-length 32 --max-tokens 128 --repeat 5 --json "$@" 2>/dev/null |
    python3 -c "import json,sys; r=json.loads([l for l in sys.stdin if l.startswith('{')][-1]); print(f'AB {sys.argv[1]:<16} {sys.argv[2]:<34} {r[\"decode_tok_s\"]:9.1f} tok/s {r[\"ms_per_token\"]:7.3f} ms/tok  TTFT {r[\"ttft_ms\"]:6.2f} ms')" "$model" "$label"
}
for model in "${models[@]}"; do
  dir=$(build "$model")
  measure "$dir" "all passes"
  if [ $runtime_only = 0 ]; then
    for p in "${passes[@]}"; do measure "$dir" "without $p" --disable-pass=$p; done
    all=(); for p in "${passes[@]}"; do all+=(--disable-pass=$p); done
    measure "$dir" "without all five" "${all[@]}"
  fi
  measure "$dir" "matvec, no folds" "--pass-option=treni-fuse-matvec=fold-norm=false fold-gated=false fold-residual=false"
  measure "$dir" "matvec, no norm fold" "--pass-option=treni-fuse-matvec=fold-norm=false"
  measure "$dir" "without PDL" --no-pdl
  measure "$dir" "without async decode" --no-async-decode
  [ $runtime_only = 1 ] && measure "$dir" "decode on cuBLASLt" --disable-pass=treni-fuse-matvec
done
[ $runtime_only = 1 ] && exit 0

dir=$(build qwen2.5-0.5b)
ids=$(python3 -c "import random; r=random.Random(5); print(','.join(str(r.randrange(151936)) for _ in range(64)))")
for variant in on off; do
  extra=(); [ $variant = off ] && extra=(--disable-pass=treni-specialize-seq1-attention)
  "$TRENI" run "$dir" --device gpu --prompt-length 1500 --max-tokens 64 --force-ids "$ids" \
    --dump-logits /tmp/seq1-$variant.bin "${extra[@]}" > /dev/null 2>&1
done
python3 - <<'PY'
import numpy as np
a = np.fromfile('/tmp/seq1-on.bin', dtype=np.float32).reshape(64, -1)
b = np.fromfile('/tmp/seq1-off.bin', dtype=np.float32).reshape(64, -1)
err = [float(np.linalg.norm(x - y) / np.linalg.norm(y)) for x, y in zip(a, b)]
same = sum(int(x.argmax() == y.argmax()) for x, y in zip(a, b))
print(f"SEQ1 positions 1499..1562: max rel-L2(seq1, generic attention) = {max(err):.2e}, argmax equal at {same}/64")
PY
