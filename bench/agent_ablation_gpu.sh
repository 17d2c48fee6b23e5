#!/usr/bin/env bash
# The agent benchmark on a real (trained) model, on the GPU machine
# (docs/perf.md, "agent workflows"):
#   TRENI=.gpu/treni bench/agent_ablation_gpu.sh
# 1. bench/tiny_model.py trains a small Qwen2 (hidden 256, 4 layers, the
#    real Qwen2.5 tokenizer and chat template) on the `gated` workflow's task
#    ("What is A + B?") for at most $BUDGET s (default 60), and prints its
#    held-out accuracy and how its errors track its entropy;
# 2. bench/agent_bench.py on that model, --device gpu: internal vs external
#    for every workflow, baseline and stress ($TASKS tasks x $REPEAT rounds,
#    default 20 x 3, as the CPU table), with the entropy-gate ablation (`gated` gate on / off),
#    the external controller text-only;
# 3. the quality ablation: `gated` on $GATED distinct held-out tasks
#    (default 200), gate on / off, one round, baseline, the external
#    controller gating on top_logprobs (--external-logprobs).
# Writes at most three files to $OUT (default /tmp/agent-ablation):
# tiny_model.json, agent_ablation.json and agent_ablation.md (the tables;
# also printed last). Expected wall time on an H200: about 3.5 minutes
# (training <= 60 s + ~20 s start-up and evaluation; step 2 ~1.5 minutes,
# most of it the stress profile's timeouts: 90 s on the dev machine's CPU
# with the fixture model; step 3 ~15 s).
set -uo pipefail
cd "$(dirname "$0")/.."
TRENI=${TRENI:-build/bin/treni}
export LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}
export TRENI_CACHE_DIR=${TRENI_CACHE_DIR:-/tmp/treni-cache}
export PYTHONUNBUFFERED=1
tokenizers=${TOKENIZERS:-build/tokenizers}
if [ ! -d "$tokenizers/qwen2_5" ] && [ -f .gpu/tokenizers.tar.gz ]; then
  mkdir -p "$tokenizers" && tar -xzf .gpu/tokenizers.tar.gz -C "$tokenizers"
fi
[ -f "$tokenizers/qwen2_5/tokenizer.json" ] || { echo "no Qwen2.5 tokenizer in $tokenizers"; exit 1; }
out=${OUT:-/tmp/agent-ablation}
mkdir -p "$out"
model=${MODEL_DIR:-/tmp/models/tiny-add}
tasks=${TASKS:-20}
repeat=${REPEAT:-3}
device=${DEVICE:-gpu}
work=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true

start=$(date +%s)
if [ -z "${SKIP_TRAIN:-}" ]; then  # SKIP_TRAIN=1: reuse $MODEL_DIR (testing the rest)
  rm -rf "$model"
  timeout 240 python3 bench/tiny_model.py --tokenizer "$tokenizers/qwen2_5" --out "$model" \
    --budget "${BUDGET:-60}" --json "$out/tiny_model.json" 2>&1 | tee "$work/train.log" | tail -n 25
fi
touch "$work/train.log"
[ -f "$model/config.json" ] || { echo "training failed"; exit 1; }
echo "training: $(( $(date +%s) - start )) s"

timeout 300 python3 bench/agent_bench.py --treni "$TRENI" --model "$model" --device "$device" \
  --tasks "$tasks" --repeat "$repeat" --json "$work/text.json" --table "$work/text.md"
timeout 120 python3 bench/agent_bench.py --treni "$TRENI" --model "$model" --device "$device" \
  --gated-tasks "${GATED:-200}" --repeat 1 --profiles baseline --workflows gated \
  --external-logprobs --json "$work/logprobs.json" --table "$work/logprobs.md"

python3 - "$work" "$out" <<'EOF'
import json, os, sys
work, out = sys.argv[1:]
runs = {}
for name in ("text", "logprobs"):
    path = os.path.join(work, name + ".json")
    if os.path.exists(path):
        runs[name] = json.load(open(path))
json.dump(runs, open(os.path.join(out, "agent_ablation.json"), "w"), indent=2)
EOF
{
  echo "## tiny model (bench/tiny_model.py)"
  grep -E "^(torch|step|held-out|max entropy|gate )" "$work/train.log" | tail -n 6
  echo
  echo "## internal vs external, external text only ($tasks tasks x $repeat rounds per row)"
  cat "$work/text.md" 2>/dev/null
  echo
  echo "## quality ablation: gated, ${GATED:-200} held-out tasks, external gating on top-20 logprobs"
  cat "$work/logprobs.md" 2>/dev/null
} > "$out/agent_ablation.md"
rm -rf "$work"
echo "total: $(( $(date +%s) - start )) s"
cat "$out/agent_ablation.md"
