#!/usr/bin/env node
// Extracts real English text from Debian's fortune cookie files into the two committed text files
// the fixtures are built from:
//
//   tests/fixtures/tokenizers/text/fortunes.txt  200 test lines (encoded into expected/*.jsonl)
//   tests/fixtures/tokenizers/text/train.txt     5000 other lines (only used to train the small
//                                                vocabularies of the *_style tokenizers)
//
// Needs the Debian packages `fortunes` and `fortunes-bofh-excuses`
// (apt-get install -y fortunes fortunes-bofh-excuses). Only run it to refresh the text: generate.js
// reads the committed files, so regenerating the fixtures does not depend on Debian's package version.
'use strict';

const fs = require('fs');
const path = require('path');

const SRC = '/usr/share/games/fortunes';
// A fixed list, in a fixed order: prose-like collections (no ASCII-art, nothing offensive).
const FILES = [
  'bofh-excuses', 'computers', 'debian', 'definitions', 'education', 'food', 'fortunes', 'goedel',
  'humorists', 'kids', 'knghtbrd', 'law', 'linux', 'literature', 'magic', 'miscellaneous', 'paradoxum',
  'people', 'perl', 'pets', 'platitudes', 'pratchett', 'riddles', 'science', 'songs-poems', 'sports',
  'startrek', 'tao', 'wisdom', 'work', 'zippy',
];
const N_TEST = 200;
const N_TRAIN = 5000;

const OUT = path.resolve(__dirname, '../../tests/fixtures/tokenizers/text');

function main() {
  const seen = new Set();
  const pool = [];
  for (const name of FILES) {
    const file = path.join(SRC, name);
    if (!fs.existsSync(file)) throw new Error(`${file} missing: apt-get install -y fortunes fortunes-bofh-excuses`);
    const buf = fs.readFileSync(file);
    const text = new TextDecoder('utf-8', { fatal: true }).decode(buf); // throws on invalid UTF-8
    for (const line of text.split('\n')) {
      if (line === '%') continue; // cookie separator
      // No control characters but TAB (some files use backspace overstriking, some hold mojibake
      // with C1 controls), something word-like, and each line only once.
      if (/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\ufffd]/u.test(line)) continue;
      if (!/[A-Za-z]{2}/.test(line)) continue;
      if (seen.has(line)) continue;
      seen.add(line);
      pool.push(line);
    }
  }
  // Test lines: evenly spaced over the pool, plus the few clean non-ASCII lines there are.
  const testIdx = new Set();
  for (let i = 0; i < N_TEST; i++) testIdx.add(Math.floor((i * pool.length) / N_TEST));
  const nonAscii = pool.map((l, i) => [l, i]).filter(([l]) => /[^\x00-\x7f]/.test(l)).map(([, i]) => i);
  for (const i of nonAscii) testIdx.add(i);
  // Keep exactly N_TEST: drop evenly spaced picks (never the non-ASCII ones) until the count fits.
  const sorted = [...testIdx].sort((a, b) => a - b);
  let extra = sorted.length - N_TEST;
  const test = [];
  for (const i of sorted) {
    if (extra > 0 && !nonAscii.includes(i)) { extra--; continue; }
    test.push(i);
  }
  const rest = pool.map((_, i) => i).filter((i) => !testIdx.has(i));
  const train = [];
  for (let i = 0; i < N_TRAIN; i++) train.push(rest[Math.floor((i * rest.length) / N_TRAIN)]);

  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'fortunes.txt'), test.map((i) => pool[i] + '\n').join(''));
  fs.writeFileSync(path.join(OUT, 'train.txt'), train.map((i) => pool[i] + '\n').join(''));
  console.log(`pool ${pool.length} lines; wrote ${test.length} test lines, ${train.length} training lines`);
}

main();
