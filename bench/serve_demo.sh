#!/usr/bin/env bash
# The serving session on the GPU machine (docs/perf.md, "Serving"):
#   bench/serve_demo.sh [SHAPE]      (default qwen2.5-3b, random weights)
# Builds the model with bench/models.py, gives it the real Qwen2.5 tokenizer
# and chat template, starts `treni serve --device gpu`, and times a curl
# session (chat, streamed chat, logprobs, a tool call, completions, errors,
# /metrics), the official `openai` npm client test and a load test against it.
# The GPU machine has neither node nor the `openai` package, nor
# libcpp-httplib: they travel in .gpu/ (node.xz, openai_node_modules.tar.gz,
# lib/), as the binary does.
set -uo pipefail
cd "$(dirname "$0")/.."
TRENI=${TRENI:-build/bin/treni}
shape=${1:-qwen2.5-3b}
export LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}
export TRENI_CACHE_DIR=${TRENI_CACHE_DIR:-/tmp/treni-cache}
tokenizers=${TOKENIZERS:-build/tokenizers}
if [ ! -d "$tokenizers/qwen2_5" ] && [ -f .gpu/tokenizers.tar.gz ]; then
  mkdir -p "$tokenizers" && tar -xzf .gpu/tokenizers.tar.gz -C "$tokenizers"
fi
if ! command -v node >/dev/null && [ -f .gpu/node.xz ]; then
  mkdir -p /tmp/nodebin && xz -dc .gpu/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node
  export PATH=/tmp/nodebin:$PATH
fi
if [ ! -d test/openai_client/node_modules ] && [ -f .gpu/openai_node_modules.tar.gz ]; then
  tar -xzf .gpu/openai_node_modules.tar.gz -C test/openai_client
fi
device=${DEVICE:-gpu}
if [ -n "${MODEL_DIR:-}" ]; then # e.g. DEVICE=cpu MODEL_DIR=test/fixtures/qwen2 to try it anywhere
  dir=$MODEL_DIR
else
  dir=$(python3 -c "import sys; sys.path.insert(0, 'bench'); import models; print(models.build('$shape', '/tmp/models/$shape'))" 2>/dev/null | tail -1)
  cp "$tokenizers/qwen2_5/tokenizer.json" "$tokenizers/qwen2_5/tokenizer_config.json" "$dir/"
fi

port=8080
"$TRENI" serve "$dir" --device $device --port $port --served-model-name "$shape" 2> /tmp/serve.log &
server=$!
for _ in $(seq 1 240); do
  curl -sf localhost:$port/health >/dev/null 2>&1 && break
  sleep 0.5
done
echo "== server log (load)"; cat /tmp/serve.log
url=http://localhost:$port
post() { # title path body
  echo; echo "== $1"; echo "\$ curl $url$2 -d '$3'"
  curl -sS -w '\n[http %{http_code}, %{time_total}s]\n' -H 'Content-Type: application/json' "$url$2" -d "$3" | cut -c1-1500
}
post "chat" /v1/chat/completions '{"model":"'$shape'","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Name three prime numbers."}],"max_tokens":32,"seed":1}'
post "streamed chat" /v1/chat/completions '{"model":"'$shape'","messages":[{"role":"user","content":"Count to five."}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}'
post "logprobs" /v1/chat/completions '{"model":"'$shape'","messages":[{"role":"user","content":"Hello"}],"max_tokens":4,"logprobs":true,"top_logprobs":2,"temperature":0.7,"seed":7}'
post "tool call (tool_choice names the function)" /v1/chat/completions '{"model":"'$shape'","messages":[{"role":"user","content":"Weather in Paris?"}],"max_tokens":48,"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],"tool_choice":{"type":"function","function":{"name":"get_weather"}}}'
post "completions" /v1/completions '{"model":"'$shape'","prompt":"The capital of France is","max_tokens":8}'
post "bad request: malformed JSON" /v1/chat/completions '{"model": '
post "bad request: unknown model" /v1/chat/completions '{"model":"nope","messages":[{"role":"user","content":"hi"}]}'
echo; echo "== /v1/models"; curl -sS $url/v1/models; echo
echo; echo "== /metrics (excerpt)"; curl -sS $url/metrics | grep -E "^treni_(requests|tokens|errors)|_count|_sum" | head -30
kill -TERM $server; wait $server; echo "server exit: $?"

echo; echo "== openai npm client ($(node --version 2>/dev/null || echo no node))"
TRENI_SERVE_ARGS="--device $device" node test/openai_client/client_test.mjs "$TRENI" "$dir" 2>&1 | grep -v "^treni serve\|^load\|^\[" | tail -25
echo; echo "== load test"
python3 bench/load_test.py --binary "$TRENI" --model "$dir" --device $device --requests ${LOAD_REQUESTS:-300} --concurrency 16 2>&1 | tail -15
