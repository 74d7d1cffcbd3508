#!/usr/bin/env bash
# run_fuzz.sh TARGET CORPUS_DIR SECONDS [libFuzzer flags...]
# Runs a libFuzzer target for SECONDS over its committed corpus. New inputs go to a scratch
# directory (the committed corpus is only read); a crash, leak, sanitizer report or an input slower
# than 10 s makes libFuzzer exit non-zero, leaving the input as crash-*/leak-*/timeout-* in the
# scratch directory, which is then copied to $PEFT_FUZZ_ARTIFACTS (default: the current directory).
set -u
target=$1 corpus=$2 seconds=$3
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/new"
"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "$@" "$work/new" "$corpus"
rc=$?
if [ "$rc" -ne 0 ]; then
    dest=${PEFT_FUZZ_ARTIFACTS:-.}
    for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
        [ -e "$f" ] && cp "$f" "$dest/" && echo "run_fuzz.sh: kept $dest/$(basename "$f")"
    done
fi
exit "$rc"
