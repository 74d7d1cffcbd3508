#!/usr/bin/env bash
# Installs what peft needs, builds it, and runs the main job end to end on a small built-in example.
# Today that is: create a small GPT-2-style model in Hugging Face format, inspect it, evaluate it
# on token sequences and generate from it. Everything it makes goes to ${OUT:-quickstart-out}/.
#   scripts/quickstart.sh [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    *) echo "quickstart.sh: unknown option '$arg' (known: --no-install)" >&2; exit 2 ;;
  esac
done
[ "$install" -eq 1 ] && scripts/install-deps.sh
scripts/build.sh build

out=${OUT:-quickstart-out}
mkdir -p "$out"
peft=build/bin/peft

echo "== 1. a small GPT-2-style model (random init, Hugging Face format)"
"$peft" init-model --arch gpt2 --hidden-size 128 --num-hidden-layers 4 --num-attention-heads 4 \
    --vocab-size 512 --max-position-embeddings 256 --seed 1 --out "$out/model"
"$peft" inspect "$out/model"

echo "== 2. evaluate it on a few token sequences"
cat > "$out/sequences.jsonl" <<'JSONL'
{"input_ids": [12, 7, 300, 41, 41, 9, 100, 101, 102, 103]}
{"input_ids": [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]}
{"input_ids": [400, 3, 400, 3, 400, 3, 400, 3]}
JSONL
"$peft" eval --model "$out/model" --input "$out/sequences.jsonl" --json
"$peft" eval --model "$out/model" --input "$out/sequences.jsonl"
echo "   (an untrained model over 512 tokens should score about ln 512 = 6.24)"

echo "== 3. generate from it (greedy, then sampled)"
"$peft" generate --model "$out/model" --prompt-ids 12,7,300 --max-new-tokens 16
"$peft" generate --model "$out/model" --prompt-ids 12,7,300 --max-new-tokens 16 --temperature 0.8 --top-k 40 --seed 7

echo
echo "done: the model is in $out/model (config.json, model.safetensors), the inputs in $out/sequences.jsonl"
