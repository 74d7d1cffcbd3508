// bpe_train.js - a small, standard, deterministic BPE trainer (Sennrich et al.), used to give the
// *_style fixture tokenizers a real (if small) vocabulary. It only has to produce a *valid* vocab
// and merge list: the expected ids come from Hugging Face's own library run on the result.
//
// Input: word frequencies (Map word -> count, each word already pre-tokenized into the model's
// symbol alphabet, e.g. byte-level characters or "▁word" pieces) and the initial symbols.
// Each step merges the most frequent adjacent pair over all words (weighted by word count); ties go
// to the pair that is smallest by (left, right) in code-unit order, so the output never depends on
// Map/Set iteration quirks. Words are split into symbols by code point.
'use strict';

/**
 * @param {Map<string, number>} wordCounts
 * @param {object} opts
 * @param {number} opts.numMerges    how many merges to learn at most
 * @param {number} [opts.minFrequency=2]  stop when the best pair is rarer than this
 * @returns {{merges: Array<[string, string]>, newTokens: string[]}} merges in rank order, and the
 *   distinct merged symbols in the order they were first created
 */
function trainBpe(wordCounts, { numMerges, minFrequency = 2 }) {
  // words[i] = array of symbols; counts[i] = frequency. Sort words for determinism.
  const entries = [...wordCounts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const words = entries.map(([w]) => Array.from(w));
  const counts = entries.map(([, c]) => c);

  const SEP = '\u0000'; // never inside a symbol: training text has no NUL
  const key = (a, b) => a + SEP + b;
  const pairCount = new Map(); // key -> count
  const pairWords = new Map(); // key -> Set of word indices that (may) contain the pair

  const addPairs = (wi, sign) => {
    const w = words[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const k = key(w[i], w[i + 1]);
      pairCount.set(k, (pairCount.get(k) || 0) + sign * counts[wi]);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, +1);

  const merges = [];
  const newTokens = [];
  const seenTokens = new Set();
  for (let step = 0; step < numMerges; step++) {
    let bestK = null;
    let bestC = 0;
    for (const [k, c] of pairCount) {
      if (c > bestC || (c === bestC && c > 0 && k < bestK)) {
        bestK = k;
        bestC = c;
      }
    }
    if (bestK === null || bestC < minFrequency) break;
    const [a, b] = bestK.split(SEP);
    const ab = a + b;
    merges.push([a, b]);
    if (!seenTokens.has(ab)) {
      seenTokens.add(ab);
      newTokens.push(ab);
    }
    const affected = [...(pairWords.get(bestK) || [])].sort((x, y) => x - y);
    for (const wi of affected) {
      const w = words[wi];
      let has = false;
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) { has = true; break; }
      if (!has) continue;
      addPairs(wi, -1);
      const out = [];
      for (let i = 0; i < w.length; ) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(ab);
          i += 2;
        } else {
          out.push(w[i]);
          i += 1;
        }
      }
      words[wi] = out;
      addPairs(wi, +1);
    }
    pairCount.delete(bestK);
    pairWords.delete(bestK);
    for (const [k, c] of pairCount) if (c === 0) { pairCount.delete(k); pairWords.delete(k); }
  }
  return { merges, newTokens };
}

module.exports = { trainBpe };
