#!/usr/bin/env bash
# Installs what peft needs, builds it, and runs the main job end to end on a small built-in example.
# Tokenizes Debian's fortunes with GPT-2's tokenizer, pretrains a small GPT-2-style model from scratch
# on them (one process), fine-tunes it with LoRA on the BOFH excuses under mpirun (`peft launch`: one
# parameter server and two workers), exports the adapter in Hugging Face peft's format and as a merged
# model, shows the loss and a generation before and after, and plots the loss curves.
# Everything goes to ${OUT:-quickstart-out}/.
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
fortunes=/usr/share/games/fortunes
threads=${THREADS:-$(nproc)}

echo "== 1. text: Debian's fortunes (general English) and the BOFH excuses (the fine-tuning task)"
general=$(ls "$fortunes" | grep -v -e '\.' -e bofh -e '^off$' | sed "s|^|$fortunes/|")
scripts/fortunes_to_jsonl.py $general > "$out/fortunes.jsonl"
scripts/fortunes_to_jsonl.py "$fortunes/bofh-excuses" > "$out/bofh.jsonl"
echo "   $(wc -l < "$out/fortunes.jsonl") fortunes, $(wc -l < "$out/bofh.jsonl") excuses"
"$peft" prep --tokenizer "$tok" --input "$out/fortunes.jsonl" --out "$out/data-fortunes" --seq-len 64 --shards 2 \
    --val-fraction 0.05
"$peft" prep --tokenizer "$tok" --input "$out/bofh.jsonl" --out "$out/data-bofh" --seq-len 64 --val-fraction 0.1

echo "== 2. a small GPT-2-style model with that tokenizer (random init, Hugging Face format)"
"$peft" init-model --arch gpt2 --hidden-size 128 --num-hidden-layers 4 --num-attention-heads 4 \
    --max-position-embeddings 128 --tokenizer "$tok" --seed 1 --out "$out/model-random"

echo "== 3. pretraining from scratch on the fortunes (--method full)"
"$peft" train --model "$out/model-random" --data "$out/data-fortunes" --out "$out/run-pretrain" --method full \
    --max-steps ${PRETRAIN_STEPS:-150} --learning-rate 2e-3 --warmup-steps 20 --per-device-train-batch-size 16 \
    --lr-scheduler-type cosine --logging-steps 25 --eval-steps 50 --eval-batches 8 --threads "$threads"
"$peft" export --run "$out/run-pretrain" --format merged --out "$out/model-base"

prompt="The problem is caused by"
echo "== 4. before fine-tuning: the base model on the excuses, and what it says"
"$peft" eval --model "$out/model-base" --data "$out/data-bofh"
"$peft" generate --model "$out/model-base" --prompt "$prompt" --max-new-tokens 20 --temperature 0.7 --top-k 40 --seed 3

echo "== 5. LoRA fine-tuning on the BOFH excuses (1.8% of the parameters train), under mpirun:"
echo "      rank 0 is the parameter server, ranks 1 and 2 are workers with 8 sequences each per step"
# as root OpenMPI wants an explicit yes; 3 ranks on fewer cores need oversubscription (the server sleeps)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
"$peft" launch --np 3 --mpirun-args "--bind-to none" -- train --model "$out/model-base" --data "$out/data-bofh" \
    --out "$out/run-lora" --method lora --target-modules c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj --r 16 --lora-alpha 32 \
    --max-steps ${LORA_STEPS:-100} --learning-rate 3e-3 --warmup-steps 10 --per-device-train-batch-size 8 \
    --logging-steps 25 --eval-steps 50 --num-servers 1

echo "== 6. after fine-tuning"
"$peft" eval --run "$out/run-lora" --data "$out/data-bofh"
"$peft" generate --run "$out/run-lora" --prompt "$prompt" --max-new-tokens 20 --temperature 0.7 --top-k 40 --seed 3
"$peft" export --run "$out/run-lora" --format peft --out "$out/adapter-bofh"
"$peft" export --run "$out/run-lora" --format merged --out "$out/model-bofh"
"$peft" plot "$out/run-pretrain"
"$peft" plot "$out/run-lora"

echo
echo "done, everything is in $out/:"
echo "  adapter-bofh/: the LoRA adapter in Hugging Face peft's format (PeftModel.from_pretrained)"
echo "  model-random/  model-base/ (pretrained)  model-bofh/ (LoRA merged): Hugging Face model directories"
echo "  run-pretrain/  run-lora/: checkpoints.lmdb, metrics.jsonl and metrics.png (the loss curves)"
echo "  data-fortunes/  data-bofh/: the tokenized datasets; *.jsonl: the documents"
