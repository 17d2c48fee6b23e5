#!/usr/bin/env bash
# JIT cache and AOT package behaviour on the GPU machine (what the GPU backend
# issue asks to be tested): prints CACHECHECK lines, exits non-zero on failure.
#   bench/cache_check.sh [TRENI] [MODEL_DIR]
set -uo pipefail
treni=${1:-build/bin/treni}
model=${2:-test/fixtures/qwen2}
work=$(mktemp -d)
fails=0
field() { python3 -c "import json,sys; print(json.loads([l for l in open(sys.argv[1]) if l.startswith('{')][-1])[sys.argv[2]])" "$1" "$2"; }
check() { # name condition
  if eval "$2"; then echo "CACHECHECK PASS $1"; else echo "CACHECHECK FAIL $1 ($2)"; fails=$((fails + 1)); fi
}
run() { # out-file env... -- args
  local out=$1; shift
  env "$@" > "$out" 2> "$out.err" || { cat "$out.err"; return 1; }
}
export TRENI_CACHE_DIR=$work/cache
run $work/first.json $treni run $model --device gpu --max-tokens 4 --json
run $work/second.json $treni run $model --device gpu --max-tokens 4 --json
check "first load compiles with NVRTC" "[ $(field $work/first.json nvrtc_compiles) -gt 0 ]"
check "second load compiles nothing" "[ $(field $work/second.json nvrtc_compiles) -eq 0 ]"
check "second load uses the cached package (no MLIR)" "grep -q 'cached JIT package' $work/second.json"
check "same tokens from the cached package" "[ \"$(head -1 $work/first.json)\" = \"$(head -1 $work/second.json)\" ]"

$treni compile $model -o $work/model90.treni 2>/dev/null  # --arch sm_90a
TRENI_CACHE_DIR=$work/empty90 run $work/aot.json $treni run $work/model90.treni --device gpu --max-tokens 4 --json
check "sm_90a package: no NVRTC" "[ $(field $work/aot.json nvrtc_compiles) -eq 0 ]"
check "sm_90a package: cubins from the package" "[ $(field $work/aot.json aot_kernels) -gt 0 ]"
check "package tokens match JIT" "[ \"$(head -1 $work/aot.json)\" = \"$(head -1 $work/first.json)\" ]"

$treni compile $model -o $work/model80.treni --arch sm_80 2>/dev/null
TRENI_CACHE_DIR=$work/empty80 run $work/jit.json $treni run $work/model80.treni --device gpu --max-tokens 4 --json
check "sm_80 package on this GPU: JIT from embedded sources" "[ $(field $work/jit.json nvrtc_compiles) -gt 0 ] && [ $(field $work/jit.json aot_kernels) -eq 0 ]"
check "JIT fallback tokens match" "[ \"$(head -1 $work/jit.json)\" = \"$(head -1 $work/first.json)\" ]"

# Errors, not crashes: a request past --max-seq, a missing model.
$treni run $model --device gpu --max-seq 8 --prompt-length 16 > /dev/null 2> $work/maxseq.err
check "over --max-seq is a clear error" "grep -q 'max-seq' $work/maxseq.err"
$treni run /nonexistent --device gpu > /dev/null 2> $work/missing.err
check "missing model is a clear error" "grep -q 'treni: error' $work/missing.err"
rm -rf "$work"
exit $((fails > 0))
