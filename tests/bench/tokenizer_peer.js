#!/usr/bin/env node
// tokenizer_peer.js - the peers of bench_tokenizer: the same text, pieces and vocabulary encoded by
// Hugging Face's Rust library through its node binding (npm `tokenizers`) or by its pure-JS
// implementation (npm `@huggingface/tokenizers`), one thread, for docs/BENCHMARKS.md.
//
//   node tokenizer_peer.js --impl rust|js --tokenizer DIR --text FILE [--mode lines|document]
//                          [--repeat N] [--budget-s S] [--chunk-bytes N] [--counts FILE]
//
// DIR holds tokenizer.json (and tokenizer_config.json, which tokenizers.js wants). Pieces are cut as
// bench_tokenizer.c cuts them, from the file's bytes: lines mode, every line without its '\n';
// document mode, runs of whole lines of at least --chunk-bytes bytes (default 1 MiB, 0 = the whole
// file). Each piece is encoded on its own without special tokens.
//   rust: `await tk.encode(piece, null, {addSpecialTokens: false})` one piece at a time, then
//         getIds(). The binding runs each encode as an async task on libuv's pool (one task in flight,
//         so one thread works at a time; UV_THREADPOOL_SIZE=1, RAYON_NUM_THREADS=1 and
//         TOKENIZERS_PARALLELISM=false are set before the library loads). encodeBatch is not used:
//         it would spread the pieces over rayon's threads.
//   js:   `tk.encode(piece, {add_special_tokens: false}).ids`, synchronous.
// Pieces are decoded to JS strings before timing; the timed passes include the binding's string
// conversion and the ids' delivery to JS, which a caller of either library pays.
//
// An untimed first pass checks every piece against --counts (bench_tokenizer --counts-out: token
// count and FNV-1a hash of the ids per piece) and prints each disagreement to stderr; then --repeat
// timed passes (default 3), fewer if the passes so far took --budget-s seconds (default 60: one
// pass of tokenizers.js over a 1 MiB llama2_style chunk, a single BPE word, takes minutes). Output: one key=value line on stdout, as bench_tokenizer prints, plus
// call_us (the mean time of one call on an empty string: the per-call cost of the binding or library
// with no text) and check=ok|MISMATCH. Exit status 3 when any piece's token count differs.
'use strict';

process.env.RAYON_NUM_THREADS = '1';
process.env.TOKENIZERS_PARALLELISM = 'false';
process.env.UV_THREADPOOL_SIZE = '1';

const fs = require('fs');
const path = require('path');

function usage(msg) {
  console.error(`tokenizer_peer: ${msg}\nusage: node tokenizer_peer.js --impl rust|js --tokenizer DIR --text FILE ` +
    '[--mode lines|document] [--repeat N] [--budget-s S] [--chunk-bytes N] [--counts FILE]');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { impl: null, tokenizer: null, text: null, mode: 'lines', repeat: 3, budget: 60, chunkBytes: 1 << 20, counts: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (v === undefined) usage(`${a}: missing value`);
    i++;
    if (a === '--impl') o.impl = v;
    else if (a === '--tokenizer') o.tokenizer = v;
    else if (a === '--text') o.text = v;
    else if (a === '--mode') o.mode = v;
    else if (a === '--repeat') o.repeat = Number(v);
    else if (a === '--budget-s') o.budget = Number(v);
    else if (a === '--chunk-bytes') o.chunkBytes = Number(v);
    else if (a === '--counts') o.counts = v;
    else usage(`unknown argument ${a}`);
  }
  if (o.impl !== 'rust' && o.impl !== 'js') usage('--impl: expected rust or js');
  if (!o.tokenizer || !o.text) usage('--tokenizer and --text are required');
  if (o.mode !== 'lines' && o.mode !== 'document') usage('--mode: expected lines or document');
  if (!Number.isInteger(o.repeat) || o.repeat < 1 || o.repeat > 1000) usage('--repeat: expected an integer in 1..1000');
  if (!(o.budget > 0)) usage('--budget-s: expected a positive number');
  if (!Number.isInteger(o.chunkBytes) || o.chunkBytes < 0) usage('--chunk-bytes: expected a non-negative integer');
  return o;
}

// The pieces as [start, end) byte ranges, exactly as bench_tokenizer.c's cut_pieces().
function cutPieces(buf, lines, chunk) {
  const out = [];
  const len = buf.length;
  for (let start = 0; start < len;) {
    let end;
    if (lines) {
      const nl = buf.indexOf(0x0a, start);
      end = nl < 0 ? len : nl;
    } else if (chunk === 0 || len - start <= chunk) {
      end = len;
    } else {
      const nl = buf.indexOf(0x0a, start + chunk - 1);
      end = nl < 0 ? len : nl + 1;
    }
    out.push([start, end]);
    start = lines ? end + 1 : end;
  }
  return out;
}

// FNV-1a over the ids as 32-bit words, as bench_tokenizer.c's ids_hash().
function idsHash(ids) {
  let h = 2166136261;
  for (const id of ids) h = Math.imul(h ^ id, 16777619) >>> 0;
  return h;
}

// encode(text) -> ids: a Promise of them for the binding (async tasks), the ids themselves for
// tokenizers.js, which the loops below do not await so that it pays for no promise.
function makeEncoder(impl, dir) {
  const json = fs.statSync(dir).isDirectory() ? path.join(dir, 'tokenizer.json') : dir;
  const configPath = path.join(path.dirname(json), 'tokenizer_config.json');
  const t0 = process.hrtime.bigint();
  let encode;
  if (impl === 'rust') {
    const { Tokenizer } = require('tokenizers');
    const tk = Tokenizer.fromFile(json);
    const opts = { addSpecialTokens: false };
    encode = (s) => tk.encode(s, null, opts).then((e) => e.getIds());
  } else {
    const { Tokenizer } = require('@huggingface/tokenizers');
    const config = fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, 'utf8')) : {};
    const tk = new Tokenizer(JSON.parse(fs.readFileSync(json, 'utf8')), config);
    const opts = { add_special_tokens: false };
    encode = (s) => tk.encode(s, opts).ids;
  }
  return { encode, sync: impl === 'js', loadSeconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

function readCounts(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => {
    const [n, h] = l.split(' ');
    return { n: Number(n), h: parseInt(h, 16) };
  });
}

// Compares every piece with bench_tokenizer's counts; returns the number of count mismatches.
async function checkPieces({ encode, sync }, texts, counts, o) {
  if (counts.length !== texts.length) {
    console.error(`tokenizer_peer: MISMATCH: ${o.counts} has ${counts.length} pieces, ${o.text} cuts into ${texts.length}`);
    return texts.length;
  }
  let badCount = 0;
  let badIds = 0;
  const what = o.mode === 'lines' ? 'line' : 'chunk';
  for (let i = 0; i < texts.length; i++) {
    const ids = sync ? encode(texts[i]) : await encode(texts[i]);
    const n = ids.length;
    const sameCount = n === counts[i].n;
    if (sameCount && idsHash(ids) === counts[i].h) continue;
    if (sameCount) badIds++;
    else badCount++;
    if (badCount + badIds <= 5) {
      console.error(`tokenizer_peer: MISMATCH ${o.impl} vs C, ${o.tokenizer}, ${what} ${i + 1}: ` +
        (sameCount ? `same count ${n}, different ids` : `${n} tokens, C ${counts[i].n}`) +
        `: ${JSON.stringify(texts[i].slice(0, 100))}`);
    }
  }
  if (badCount + badIds > 0) {
    console.error(`tokenizer_peer: MISMATCH ${o.impl} vs C on ${o.tokenizer} ${o.mode}: ${badCount} piece(s) with ` +
      `another token count, ${badIds} more with the same count but other ids, of ${texts.length}`);
  }
  return badCount + badIds;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const buf = fs.readFileSync(o.text);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const texts = cutPieces(buf, o.mode === 'lines', o.chunkBytes).map(([s, e]) => decoder.decode(buf.subarray(s, e)));
  const enc = makeEncoder(o.impl, o.tokenizer);
  const { encode, sync, loadSeconds } = enc;

  const bad = o.counts ? await checkPieces(enc, texts, readCounts(o.counts), o) : 0;

  const EMPTY_CALLS = 20000;
  let t0 = process.hrtime.bigint();
  if (sync) for (let i = 0; i < EMPTY_CALLS; i++) encode('');
  else for (let i = 0; i < EMPTY_CALLS; i++) await encode('');
  const callUs = Number(process.hrtime.bigint() - t0) / 1e3 / EMPTY_CALLS;

  const times = [];
  let tokens = 0;
  for (let r = 0; r < o.repeat && !(times.reduce((a, b) => a + b, 0) >= o.budget); r++) {
    let total = 0;
    t0 = process.hrtime.bigint();
    if (sync) for (const s of texts) total += encode(s).length;
    else for (const s of texts) total += (await encode(s)).length;
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    if (r > 0 && total !== tokens) throw new Error(`pass ${r + 1} gave ${total} tokens, pass 1 ${tokens}`);
    tokens = total;
  }
  times.sort((a, b) => a - b);
  console.log(`impl=${o.impl} mode=${o.mode} bytes=${buf.length} pieces=${texts.length} tokens=${tokens} ` +
    `load_s=${loadSeconds.toFixed(3)} passes=${times.length} best_s=${times[0].toFixed(4)} ` +
    `median_s=${times[Math.floor(times.length / 2)].toFixed(4)} ` +
    `mb_s=${(buf.length / 1e6 / times[0]).toFixed(2)} call_us=${callUs.toFixed(2)} check=${bad ? 'MISMATCH' : (o.counts ? 'ok' : 'none')}`);
  process.exitCode = bad ? 3 : 0;
}

main().catch((e) => {
  console.error(`tokenizer_peer: ${e.stack || e}`);
  process.exit(1);
});
