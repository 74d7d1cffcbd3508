/*
 * tokenizer.h - Hugging Face BPE tokenizers: tokenizer.json, or GPT-2's vocab.json + merges.txt.
 *
 * Ids and decoded text match Hugging Face's `tokenizers` library (v0.19-0.21, the Rust code behind
 * transformers' fast tokenizers); tests/unit/test_tokenizer.c checks every line of its fixtures.
 *
 * Supported (anything else is PEFT_EUNSUPPORTED naming the file and the JSON key):
 *   model:          BPE (vocab, merges as "a b" strings or [a, b] pairs, byte_fallback, unk_token,
 *                   fuse_unk, ignore_merges, continuing_subword_prefix/end_of_word_suffix absent)
 *   normalizer:     null, NFC, Prepend, Replace (string or regex pattern), Sequence of those
 *   pre_tokenizer:  null, ByteLevel (add_prefix_space, use_regex), Split (Regex or String pattern,
 *                   behavior Isolated/Removed/MergedWithPrevious/MergedWithNext/Contiguous, invert),
 *                   Metaspace (replacement, prepend_scheme always/first/never, split), Digits,
 *                   Sequence of those
 *   post_processor: null, ByteLevel, TemplateProcessing (single: special tokens around $A),
 *                   Sequence of those with at most one TemplateProcessing (Llama 3's BOS)
 *   decoder:        ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence
 *   added_tokens:   matched in the raw text before normalisation (longest match first), honouring
 *                   special, single_word, lstrip, rstrip; normalized=true tokens are matched after
 *                   normalisation, against their normalized content. Ids are assigned as HF does
 *                   (the model's id for content already in the vocabulary, else the next free id);
 *                   a file whose "id" disagrees only gets a warning from HF, and nothing here.
 * Ignored: truncation, padding (callers truncate and pad ids themselves), offsets, type ids.
 * Regexes run through PCRE2 with UTF and UCP (Unicode properties), JIT-compiled; \s and \S are
 * read as Unicode White_Space, as Oniguruma (HF's engine) does.
 * bos/eos come from tokenizer_config.json next to the tokenizer (bos_token, eos_token: a string
 * or {"content": ...}); without it they are -1, except eos = <|endoftext|> for vocab.json +
 * merges.txt.
 *
 *     tokenizer *tk;
 *     if (tokenizer_load("model_dir", &tk)) { fprintf(stderr, "%s\n", err_msg()); ... }
 *     tok_ids ids = {0};
 *     tokenizer_encode(tk, text, strlen(text), true, &ids);   // appends to ids (grows it)
 *     char *s; size_t n;
 *     tokenizer_decode(tk, ids.v, ids.n, false, &s, &n);      // caller frees s
 *     free(ids.v); tokenizer_free(tk);
 *
 * Encoding fails only on invalid UTF-8 (PEFT_EFORMAT with the byte offset) or out of memory
 * (callers name the file and line). A tokenizer is read-only after load and may be shared by
 * threads: each call allocates its own scratch (a few small buffers, freed before it returns).
 * There is no mutable word cache; instead tokenizer_load() runs BPE once over every vocabulary
 * token and remembers which come back as themselves, so a word that is such a token costs one hash
 * lookup (about 0.05 s more load time for GPT-2's 50k tokens; encoding GPT-2 runs at 10-20 MB/s
 * per core on English text, line by line).
 */
#ifndef PEFT_TOKENIZER_H
#define PEFT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* A growable id array; zero-initialise, free(v) when done. */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

/* path: a model directory (tokenizer.json, else vocab.json + merges.txt), or a tokenizer.json.
 * On success *out is the tokenizer (free with tokenizer_free); on error *out is NULL, the status is
 * PEFT_EIO (missing file), PEFT_EFORMAT (malformed content) or PEFT_EUNSUPPORTED, and err_msg()
 * names the file and JSON key. */
int tokenizer_load(const char *path, tokenizer **out);
/* The same for the text of a tokenizer.json already in memory (json[0, len)); `name` stands for
 * the file in messages. No tokenizer_config.json is read, so bos and eos are -1. */
int tokenizer_load_memory(const char *name, const char *json, size_t len, tokenizer **out);
/* NULL is a no-op. */
void tokenizer_free(tokenizer *tk);

/* Appends the ids of text[0, len) to *ids; add_special applies the post-processor (BOS etc.).
 * On error *ids keeps its previous length. */
int tokenizer_encode(const tokenizer *tk, const char *text, size_t len, bool add_special, tok_ids *ids);

/* Decodes ids into a malloc'd NUL-terminated string (*len, if len is not NULL, excludes the NUL);
 * skip_special drops special tokens. Added tokens decode as their content. PEFT_EFORMAT for an id
 * outside the vocabulary (*text is then NULL). */
int tokenizer_decode(const tokenizer *tk, const int32_t *ids, size_t n, bool skip_special, char **text,
                     size_t *len);

int tokenizer_vocab_size(const tokenizer *tk);     /* largest id + 1, added tokens included */
int tokenizer_token_to_id(const tokenizer *tk, const char *token); /* -1 if absent */
/* The token's string as stored (byte-level tokens in GPT-2's byte alphabet), valid while tk lives;
 * NULL if no token has that id. */
const char *tokenizer_id_to_token(const tokenizer *tk, int id);
int tokenizer_bos_id(const tokenizer *tk);         /* -1 if the tokenizer has none */
int tokenizer_eos_id(const tokenizer *tk);         /* -1 if none */

/* A stable 64-bit fingerprint of everything that changes the ids (vocab, merges, normalizer,
 * pre-tokenizer, added tokens, post-processor) as 16 hex digits + NUL, valid while tk lives;
 * datasets record it. The decoder and JSON layout do not count: GPT-2's tokenizer.json and its
 * vocab.json + merges.txt give the same fingerprint. */
const char *tokenizer_fingerprint(const tokenizer *tk);

#endif
