#!/usr/bin/env bash
# Where a decode token's time goes, kernel by kernel (GPU machine):
#   bench/profile.sh [MODEL ...]   (default: the three Qwen2.5 bench shapes)
# Prints graph-replay tok/s and the per-template sum of step times.
set -uo pipefail
cd "$(dirname "$0")/.."
TRENI=${TRENI:-build/bin/treni}
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(qwen2.5-0.5b qwen2.5-3b qwen2.5-7b)
for m in "${models[@]}"; do
  dir=$(python3 -c "import sys; sys.path.insert(0, 'bench'); import models; print(models.build('$m', '/tmp/models/$m'))" 2>/dev/null | tail -1)
  echo "== $m"
  "$TRENI" run "$dir" --device gpu --prompt-length 32 --max-tokens 128 --repeat 3 --profile 20 2>&1 >/dev/null | grep -v "^model:\|^load:"
done
