#!/usr/bin/env python3
"""Turns Debian fortune files (entries separated by lines holding only '%') into JSONL documents
{"text": ...}, one per entry, skipping entries that are not valid UTF-8.

    scripts/fortunes_to_jsonl.py /usr/share/games/fortunes/fortunes > fortunes.jsonl
"""
import json
import sys


def entries(path):
    with open(path, "rb") as f:
        raw = f.read()
    for chunk in raw.split(b"\n%\n"):
        try:
            text = chunk.decode("utf-8").strip("\n")
        except UnicodeDecodeError:
            continue
        if text.strip():
            yield text


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: fortunes_to_jsonl.py FORTUNE_FILE... > out.jsonl")
    for path in sys.argv[1:]:
        for text in entries(path):
            sys.stdout.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
