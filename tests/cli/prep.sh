#!/usr/bin/env bash
# peft prep end to end: every input format, packing and --no-pack, shards and the validation split,
# the finished-or-nothing rule (also when interrupted), bad lines (--on-error), and eval --data on the result.
# Text formats use the GPT-2 tokenizer fixture (real vocabulary).
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
FIX=${PEFT_FIXTURES:-tests/fixtures}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# manifest value: json_get FILE python-expression-on-m
json_get() { python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print($2)" "$1"; }

# --- token ids, packed, 3 shards, no validation
python3 - "$work/ids.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for d in range(50):
        n = 5 + d % 13
        f.write(json.dumps({"input_ids": [(7 * d + t) % 60 + 1 for t in range(n)]}) + "\n")
PY
"$PEFT" prep --input "$work/ids.jsonl" --out "$work/ids" --seq-len 16 --shards 3 --val-fraction 0 \
    --eos-token-id 0 > "$work/out.txt" || fail "prep of input_ids"
m=$work/ids/manifest.json
# 50 documents of 5..17 tokens + 1 EOS each
want=$(python3 -c "print(sum(5 + d % 13 + 1 for d in range(50)))")
[ "$(json_get "$m" 'm["train"]["tokens"]')" = "$want" ] || fail "token count $(json_get "$m" 'm["train"]["tokens"]') != $want"
[ "$(json_get "$m" 'm["train"]["sequences"]')" = "$(( (want + 15) / 16 ))" ] || fail "packed sequence count"
[ "$(json_get "$m" 'len(m["train"]["files"])')" = 3 ] || fail "three shard files"
[ "$(json_get "$m" 'm["train"]["documents"]')" = 50 ] || fail "document count"
[ "$(json_get "$m" 'm["tokenizer"]["vocab_size"]')" = 61 ] || fail "vocab size from max id"
grep -q "50 documents" "$work/out.txt" || fail "summary line: $(cat "$work/out.txt")"
"$PEFT" inspect "$work/ids" | grep -q "packed, 3 training shard" || fail "inspect dataset"

# --- labels mask tokens out of the loss; --no-pack truncates and says so
printf '%s\n' '{"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]}' \
    '{"input_ids": [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]}' > "$work/labels.jsonl"
"$PEFT" prep --input "$work/labels.jsonl" --out "$work/labels" --seq-len 8 --no-pack --val-fraction 0 \
    > /dev/null 2> "$work/err.txt" || fail "prep --no-pack"
grep -q "truncated 1 document" "$work/err.txt" || fail "truncation warning: $(cat "$work/err.txt")"
[ "$(json_get "$work/labels/manifest.json" 'm["train"]["loss_tokens"]')" = 10 ] || fail "loss tokens with labels and truncation"
[ "$(json_get "$work/labels/manifest.json" 'm["train"]["sequences"]')" = 2 ] || fail "one sequence per document"

# --- bad lines: fail names FILE:LINE and leaves nothing; skip counts them
printf '%s\n' '{"input_ids": [1, 2, 3]}' '{"input_ids": [1, 2' '{"input_ids": [4, 5]}' > "$work/bad.jsonl"
err=$("$PEFT" prep --input "$work/bad.jsonl" --out "$work/bad" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "bad.jsonl:2: not valid JSON" || fail "malformed line: rc $rc: $err"
[ ! -e "$work/bad" ] && ! ls -d "$work"/bad.partial-* >/dev/null 2>&1 || fail "a failed prep left a directory behind"
"$PEFT" prep --input "$work/bad.jsonl" --out "$work/bad" --on-error skip --val-fraction 0 > /dev/null 2> "$work/err.txt" \
    || fail "--on-error skip"
grep -q "skipped 1 malformed line" "$work/err.txt" || fail "skip count: $(cat "$work/err.txt")"
err=$("$PEFT" prep --input "$work/ids.jsonl" --out "$work/ids" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "already exists" || fail "existing --out: rc $rc: $err"
: > "$work/empty.jsonl"
err=$("$PEFT" prep --input "$work/empty.jsonl" --out "$work/empty" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "empty.jsonl: no documents" || fail "empty input: rc $rc: $err"
err=$("$PEFT" prep --input "$work/ids.jsonl" --out "$work/x" --format text 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "needs --tokenizer" || fail "text without tokenizer: rc $rc: $err"

# --- text formats with a real tokenizer
tok=$FIX/tokenizers/gpt2
printf '%s\n' '{"text": "Hello world. This is a test of packing."}' \
    '{"prompt": "Q: two plus two?\nA:", "completion": " four"}' \
    '{"text": "caf\u00e9 \u4e2d\u6587 \ud83d\ude00"}' > "$work/text.jsonl"
"$PEFT" prep --tokenizer "$tok" --input "$work/text.jsonl" --out "$work/text" --seq-len 32 --val-fraction 0 \
    > /dev/null || fail "prep of text"
m=$work/text/manifest.json
[ "$(json_get "$m" 'm["tokenizer"]["eos_token_id"]')" = 50256 ] || fail "GPT-2 EOS in the manifest"
[ -n "$(json_get "$m" 'm["tokenizer"]["fingerprint"]')" ] || fail "tokenizer fingerprint"
# "Hello world." -> [15496, 995, 13]: the prompt/completion line has only " four" + EOS in the loss
total=$(json_get "$m" 'm["train"]["tokens"]'); loss=$(json_get "$m" 'm["train"]["loss_tokens"]')
[ "$loss" -lt "$total" ] || fail "prompt tokens must be masked ($loss of $total)"
printf '%s\n' '{"text": "bad \xff byte"}' > "$work/utf8.jsonl"
err=$("$PEFT" prep --tokenizer "$tok" --input "$work/utf8.jsonl" --out "$work/utf8" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "utf8.jsonl:1" || fail "invalid UTF-8: rc $rc: $err"

# --- chat: loss only on assistant turns, with each family's template
printf '%s\n' '{"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}]}' \
    > "$work/chat.jsonl"
for style in qwen2_style llama3_style; do
    "$PEFT" prep --tokenizer "$FIX/tokenizers/$style" --input "$work/chat.jsonl" --out "$work/chat_$style" \
        --seq-len 64 --val-fraction 0 > /dev/null || fail "prep chat with $style"
    m=$work/chat_$style/manifest.json
    total=$(json_get "$m" 'm["train"]["tokens"]'); loss=$(json_get "$m" 'm["train"]["loss_tokens"]')
    { [ "$loss" -gt 3 ] && [ "$loss" -lt "$((total / 2 + 4))" ]; } || fail "$style chat mask: $loss of $total tokens"
done
err=$("$PEFT" prep --tokenizer "$tok" --input "$work/chat.jsonl" --out "$work/chat_gpt2" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -q "chatml chat template needs the token <|im_start|>" || fail "chat without template tokens: rc $rc: $err"

# --- eval --data on a model that fits, and a model whose tokenizer does not
"$PEFT" init-model --arch gpt2 --hidden-size 32 --num-hidden-layers 1 --num-attention-heads 2 \
    --max-position-embeddings 64 --vocab-size 64 --out "$work/model" > /dev/null || fail "init-model"
"$PEFT" eval --model "$work/model" --data "$work/ids" | grep -q "loss" || fail "eval --data"
err=$("$PEFT" eval --model "$work/model" --data "$work/text" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "vocabulary" || fail "dataset for another vocabulary: rc $rc: $err"

# --- a dataset prepared with another tokenizer than the model's is refused by its fingerprint
"$PEFT" init-model --arch llama --hidden-size 32 --num-hidden-layers 1 --num-attention-heads 2 \
    --intermediate-size 64 --tokenizer "$FIX/tokenizers/qwen2_style" --out "$work/qwen_model" > /dev/null || fail "init-model --tokenizer"
err=$("$PEFT" eval --model "$work/qwen_model" --data "$work/chat_llama3_style" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "prepared with another tokenizer" || fail "fingerprint mismatch: rc $rc: $err"
"$PEFT" eval --model "$work/qwen_model" --data "$work/chat_qwen2_style" > /dev/null || fail "eval with the matching tokenizer"
"$PEFT" generate --model "$work/qwen_model" --prompt "Hello" --max-new-tokens 4 > /dev/null || fail "generate --prompt"

# --- Ctrl-C while prep waits for input: an error, and no dataset or partial directory left behind
mkfifo "$work/fifo"
"$PEFT" prep --input "$work/fifo" --out "$work/intr" --val-fraction 0 --eos-token-id 0 > /dev/null 2> "$work/intr.err" &
pid=$!
exec 3> "$work/fifo"
echo '{"input_ids": [1, 2, 3]}' >&3
for _ in $(seq 100); do ls -d "$work"/intr.partial-* > /dev/null 2>&1 && break; sleep 0.2; done
sleep 1
kill -INT "$pid"
sleep 1
exec 3>&-
wait "$pid"; rc=$?
[ $rc -eq 1 ] && grep -q "prep: interrupted by signal 2" "$work/intr.err" || fail "interrupted prep: rc $rc: $(cat "$work/intr.err")"
[ ! -e "$work/intr" ] && ! ls -d "$work"/intr.partial-* > /dev/null 2>&1 || fail "an interrupted prep left a directory behind"

if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "prep: all checks passed"
