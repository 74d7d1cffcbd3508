#!/usr/bin/env bash
# Installs what peft needs, builds it, and runs the main job end to end on a small built-in example.
# Today: tokenize Debian's fortunes into a training dataset with GPT-2's tokenizer, create a small
# GPT-2-style model in Hugging Face format, evaluate it on the dataset and generate from it.
# (Training, mpirun and export join as they land.) Everything goes to ${OUT:-quickstart-out}/.
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
if [ "$install" -eq 1 ]; then
  scripts/install-deps.sh
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends fortunes fortunes-bofh-excuses
fi
scripts/build.sh build

out=${OUT:-quickstart-out}
rm -rf "$out"
mkdir -p "$out"
peft=build/bin/peft
tok=tests/fixtures/tokenizers/gpt2   # GPT-2's real vocabulary (50257 tokens)

echo "== 1. Debian's fortunes as JSONL documents, tokenized into a dataset"
scripts/fortunes_to_jsonl.py /usr/share/games/fortunes/fortunes > "$out/fortunes.jsonl"
echo "   $(wc -l < "$out/fortunes.jsonl") documents"
"$peft" prep --tokenizer "$tok" --input "$out/fortunes.jsonl" --out "$out/data" --seq-len 128 --shards 2 \
    --val-fraction 0.05
"$peft" inspect "$out/data"

echo "== 2. a small GPT-2-style model with that tokenizer (random init, Hugging Face format)"
"$peft" init-model --arch gpt2 --hidden-size 128 --num-hidden-layers 4 --num-attention-heads 4 \
    --max-position-embeddings 256 --tokenizer "$tok" --seed 1 --out "$out/model"
"$peft" inspect "$out/model"

echo "== 3. its loss on the validation split (untrained: about ln 50257 = 10.8)"
"$peft" eval --model "$out/model" --data "$out/data"

echo "== 4. generation (greedy, then sampled): untrained, so it is noise for now"
"$peft" generate --model "$out/model" --prompt "Your lucky number is" --max-new-tokens 16
"$peft" generate --model "$out/model" --prompt "Your lucky number is" --max-new-tokens 16 --temperature 0.8 \
    --top-k 40 --seed 7

echo
echo "done: dataset in $out/data, model in $out/model, documents in $out/fortunes.jsonl"
