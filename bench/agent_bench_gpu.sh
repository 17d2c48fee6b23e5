#!/usr/bin/env bash
# The internal-vs-external agent benchmark on the GPU machine (docs/perf.md,
# "agent workflows"):
#   bench/agent_bench_gpu.sh [SHAPE] [extra agent_bench.py flags]
# Builds SHAPE (default qwen2.5-0.5b, random weights) with bench/models.py,
# gives it the real Qwen2.5 tokenizer and chat template, and runs
# bench/agent_bench.py --device gpu (20 tasks x 3 rounds per workflow, gate
# variant and profile), writing $OUT/agent_bench_gpu.json (or /tmp) and the
# table. Random weights: only structure and latency mean anything here; the
# quality ablation on a trained model is bench/agent_ablation_gpu.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
TRENI=${TRENI:-build/bin/treni}
shape=${1:-qwen2.5-0.5b}
shift || true
export LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}
export TRENI_CACHE_DIR=${TRENI_CACHE_DIR:-/tmp/treni-cache}
tokenizers=${TOKENIZERS:-build/tokenizers}
if [ ! -d "$tokenizers/qwen2_5" ] && [ -f .gpu/tokenizers.tar.gz ]; then
  mkdir -p "$tokenizers" && tar -xzf .gpu/tokenizers.tar.gz -C "$tokenizers"
fi
dir=$(python3 -c "import sys; sys.path.insert(0, 'bench'); import models; print(models.build('$shape', '/tmp/models/$shape'))" 2>/dev/null | tail -1)
cp "$tokenizers/qwen2_5/tokenizer.json" "$tokenizers/qwen2_5/tokenizer_config.json" "$dir/"
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/agent_bench.py --treni "$TRENI" --model "$dir" --device gpu \
  --tasks 20 --repeat 3 --json "$out/agent_bench_gpu.json" "$@"
