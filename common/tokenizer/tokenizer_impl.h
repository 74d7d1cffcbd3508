/*
 * tokenizer_impl.h - the tokenizer's internal structures, shared by the files of common/tokenizer/.
 *
 * Encoding runs the pipeline of Hugging Face `tokenizers` (v0.19-0.21):
 *
 *   raw text --added_split (non-normalized added tokens)--> segments
 *   segment  --tok_normalize--> normalized --added_split (normalized added tokens)--> pieces
 *   piece    --tok_pretokenize--> words --tok_bpe_word--> ids            (tokenizer.c drives it)
 *
 * Files: tokenizer.c (public API, the encode driver, accessors), tokenizer_load.c (tokenizer.json,
 * vocab.json + merges.txt, tokenizer_config.json), pipeline_load.c (normalizer, pre-tokenizer,
 * post-processor and decoder objects), tables.c (vocab and merge hash tables, fingerprint hashing),
 * pattern.c (regex/literal matching with onig's find_iter rules), normalize.c, nfc.c +
 * unicode_tables.c (generated), pretokenize.c, bpe.c, added_tokens.c, decode.c, utf8.c.
 *
 * Memory: a tokenizer owns everything below and is never written after tokenizer_load() returns.
 * Per-call temporaries live in a tok_scratch on the caller's stack (tok_scratch_free() releases
 * them), so any number of threads may encode with one tokenizer.
 */
#ifndef PEFT_TOKENIZER_IMPL_H
#define PEFT_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* ---- growable byte buffer -------------------------------------------------------------------- */

typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;

/* Make room for `extra` more bytes; PEFT_ENOMEM on failure (b unchanged). */
int tok_buf_reserve(tok_buf *b, size_t extra);
int tok_buf_append(tok_buf *b, const void *data, size_t n);
int tok_ids_push(tok_ids *ids, int32_t id);
int tok_ids_append(tok_ids *ids, const int32_t *v, size_t n);

/* ---- UTF-8 and character classes (utf8.c) ---------------------------------------------------- */

/* Offset of the first byte that starts an invalid UTF-8 sequence (overlong forms, surrogates and
 * code points above U+10FFFF are invalid), or n if all of s is valid. */
size_t utf8_check(const char *s, size_t n);
/* Decodes the character at s (valid UTF-8, at least one byte); *len receives its byte length. */
uint32_t utf8_next(const char *s, int *len);
/* Writes cp as UTF-8 into out (4 bytes of room); returns the length. */
int utf8_put(uint32_t cp, char *out);
/* Byte length of the character starting with byte c (1 for a stray continuation byte). */
int utf8_len(unsigned char c);
/* Appends s as Rust's String::from_utf8_lossy does: one U+FFFD per maximal invalid subpart. */
int utf8_append_lossy(tok_buf *out, const char *s, size_t n);
/* Unicode White_Space (Rust's char::is_whitespace, regex \s). */
bool uni_is_space(uint32_t cp);

/* ---- NFC (nfc.c, tables in unicode_tables.c) ------------------------------------------------- */

extern const int uni_ccc_n, uni_decomp_n, uni_compose_n;
extern const uint32_t uni_ccc[], uni_decomp_cp[], uni_decomp_pool[], uni_compose[];
extern const uint16_t uni_decomp_off[];

/* Appends NFC(s) to out; s is valid UTF-8. cps is scratch for code points. */
int nfc_append(const char *s, size_t n, tok_buf *out, tok_buf *cps);

/* ---- hash tables (tables.c) ------------------------------------------------------------------ */

uint32_t tok_hash_bytes(const void *p, size_t n);

/* string -> id over strings stored in a shared arena; open addressing, linear probing. */
typedef struct tok_strent {
    uint32_t off, len; /* the string: arena[off, off + len) */
    int32_t id;
} tok_strent;
typedef struct tok_strmap {
    uint64_t *slots; /* [mask + 1]: hash << 32 | (entry index + 1), 0 = empty */
    tok_strent *e;   /* [n] in insertion order */
    size_t n, cap, mask;
} tok_strmap;

/* Adds (arena + off, len) -> id; a string already present takes the new id (a HashMap insert). */
int tok_strmap_put(tok_strmap *m, const char *arena, uint32_t off, uint32_t len, int32_t id);
int32_t tok_strmap_get(const tok_strmap *m, const char *arena, const char *s, size_t len);
void tok_strmap_free(tok_strmap *m);

/* (left id, right id) -> (rank, merged id). */
typedef struct tok_merge_slot {
    uint64_t key; /* left << 32 | right; TOK_MERGE_EMPTY when free */
    int32_t rank, id;
} tok_merge_slot;
#define TOK_MERGE_EMPTY UINT64_MAX

typedef struct tok_merges {
    tok_merge_slot *slots;
    size_t n, mask;
} tok_merges;

int tok_merges_init(tok_merges *m, size_t expected);
/* Inserts or replaces (a later duplicate pair wins, as in HF's HashMap). */
void tok_merges_put(tok_merges *m, int32_t a, int32_t b, int32_t rank, int32_t id);
static inline const tok_merge_slot *tok_merges_get(const tok_merges *m, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (size_t i = (size_t)(h >> 32) & m->mask;; i = (i + 1) & m->mask) {
        const tok_merge_slot *s = &m->slots[i];
        if (s->key == key) return s;
        if (s->key == TOK_MERGE_EMPTY) return NULL;
    }
}

/* FNV-1a 64 over a canonical description of everything that changes ids. */
typedef struct tok_fp {
    uint64_t h;
} tok_fp;
void tok_fp_bytes(tok_fp *f, const void *p, size_t n);
void tok_fp_int(tok_fp *f, int64_t v);
void tok_fp_str(tok_fp *f, const char *s, size_t n); /* length-prefixed */

/* ---- patterns (pattern.c) -------------------------------------------------------------------- */

/* A compiled onig-style regex (through PCRE2, UTF + UCP, JIT when available) or a literal. */
typedef struct tok_pattern {
    pcre2_code *re; /* NULL for a literal */
    bool jit;
    char *lit; /* literal bytes (also the regex source, for the fingerprint) */
    size_t lit_len;
} tok_pattern;

/* `where` names the file and JSON key in error messages. */
int tok_pattern_regex(tok_pattern *p, const char *src, const char *where);
int tok_pattern_literal(tok_pattern *p, const char *s, size_t n);
void tok_pattern_free(tok_pattern *p);

/* Iterates the non-overlapping matches of a pattern over s[0, n) as onig's find_iter does (an
 * empty match right where the previous match ended is skipped). */
typedef struct tok_find {
    const tok_pattern *pat;
    const char *s;
    size_t n, pos, last_end;
    bool has_last, done;
    pcre2_match_data *md;
} tok_find;

void tok_find_init(tok_find *f, const tok_pattern *p, const char *s, size_t n, pcre2_match_data *md);
/* 1 and [*start, *end) for a match, 0 when there are no more, PEFT_EINTERNAL on a PCRE2 error. */
int tok_find_next(tok_find *f, size_t *start, size_t *end);

/* ---- pipeline objects (pipeline_load.c) ------------------------------------------------------ */

enum tok_norm_type { TOK_NORM_NFC, TOK_NORM_PREPEND, TOK_NORM_REPLACE };
typedef struct tok_normalizer {
    enum tok_norm_type type;
    tok_pattern pat; /* Replace */
    char *str;       /* Prepend: the prefix; Replace: the content */
    size_t str_len;
} tok_normalizer;

enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS
};
enum tok_pre_type { TOK_PRE_BYTELEVEL, TOK_PRE_SPLIT, TOK_PRE_METASPACE, TOK_PRE_DIGITS };
enum tok_prepend { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };
typedef struct tok_pretok {
    enum tok_pre_type type;
    bool add_prefix_space, use_regex; /* ByteLevel */
    tok_pattern pat;                  /* ByteLevel (GPT-2 regex), Split, Digits (\p{N}) */
    enum tok_split_behavior behavior; /* Split, Digits */
    bool invert;                      /* Split */
    char rep[4];                      /* Metaspace: the replacement character as UTF-8 */
    int rep_len;
    enum tok_prepend prepend;
    bool split;
} tok_pretok;

enum tok_dec_type {
    TOK_DEC_BYTELEVEL,
    TOK_DEC_METASPACE,
    TOK_DEC_REPLACE,
    TOK_DEC_BYTEFALLBACK,
    TOK_DEC_FUSE,
    TOK_DEC_STRIP
};
typedef struct tok_decoder {
    enum tok_dec_type type;
    tok_pattern pat; /* Replace */
    char *str;       /* Replace: content */
    size_t str_len;
    uint32_t ch;     /* Metaspace: replacement; Strip: content */
    enum tok_prepend prepend;
    int start, stop; /* Strip */
} tok_decoder;

/* An added token. Content lives in the tokenizer's arena. */
typedef struct tok_added {
    int32_t id;
    uint32_t off, len;
    char *norm; /* normalized content (normalized tokens only) */
    size_t norm_len;
    bool special, single_word, lstrip, rstrip, normalized;
} tok_added;

/* Leftmost-longest matcher over a set of added tokens (bucketed by first byte). */
typedef struct tok_matcher {
    int32_t *tok; /* indices into tokenizer.added, by first byte, then longest first */
    uint32_t first[257];
    size_t n;
} tok_matcher;

/* ---- the tokenizer --------------------------------------------------------------------------- */

struct tokenizer {
    char *arena; /* every token string, NUL-terminated */
    size_t arena_len, arena_cap;

    /* model (BPE) */
    tok_strmap vocab;   /* model vocabulary only */
    tok_merges merges;
    int32_t unk_id;     /* -1: no unk token */
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_id[256]; /* "<0xXX>" ids for byte_fallback, -1 if absent */
    int32_t *char_id;     /* [TOK_CHAR_CACHE] id of each one-character token below it, -1 if none */
    uint8_t *whole;       /* [n_ids / 8 + 1] bit set: BPE of the token's own string is that token */

    /* id -> token (added tokens override the model) */
    uint32_t *id_off; /* [n_ids] arena offset, UINT32_MAX for no token */
    uint32_t *id_len;
    bool *id_special; /* [n_ids] decoding with skip_special drops it */
    int n_ids;

    tok_added *added;
    size_t n_added;
    tok_matcher match_raw, match_norm;
    pcre2_code *word_re; /* Rust regex \w for single_word checks, NULL if no token needs it */

    tok_normalizer *norm;
    size_t n_norm;
    tok_pretok *pre;
    size_t n_pre;
    tok_decoder *dec;
    size_t n_dec;
    bool has_decoder; /* false: tokens are joined with ' ' */
    int32_t *post_prefix, *post_suffix;
    size_t n_prefix, n_suffix;

    /* GPT-2's bytes_to_unicode, both ways */
    char byte_char[256][2]; /* UTF-8 of the character for each byte (1 or 2 bytes) */
    uint8_t byte_char_len[256];
    int16_t char_byte[324]; /* code point -> byte, -1 if not a byte character */

    int bos_id, eos_id;
    tok_fp fp; /* fed while loading (merges), finished by tokenizer_load() */
    char fingerprint[17];
};

#define TOK_CHAR_CACHE 0x800

/* A range of a string with an id: an added token's segment (id >= 0, -1 for plain text), or a
 * split part (id 1 for a match, 0 for the gap between matches). */
typedef struct tok_seg {
    size_t start, end;
    int32_t id;
} tok_seg;
typedef struct tok_segs {
    tok_seg *v;
    size_t n, cap;
} tok_segs;
int tok_segs_push(tok_segs *sg, size_t start, size_t end, int32_t id);

typedef struct tok_piece {
    size_t off, len;
    bool first; /* starts at offset 0 of the input (Metaspace prepend_scheme "first") */
} tok_piece;

typedef struct tok_pieces {
    tok_piece *v;
    size_t n, cap;
    tok_buf text;
} tok_pieces;

/* Per-call temporaries; tok_scratch_init(), then tok_scratch_free() when done. */
typedef struct tok_scratch {
    pcre2_match_data *md;
    tok_buf norm[2], tmp, cps;
    tok_pieces pieces[2];
    tok_segs parts, segs, nsegs; /* split parts, raw and normalized added-token segments */
    int32_t *word; /* bpe.c: the symbols of one word */
    size_t word_cap;
    void *syms;    /* bpe.c: linked symbols for long words */
    size_t syms_cap;
    uint64_t *heap;
    size_t heap_cap;
} tok_scratch;

int tok_scratch_init(tok_scratch *sc);
void tok_scratch_free(tok_scratch *sc);
int tok_pieces_push(tok_pieces *ps, const char *s, size_t n, bool first);

/* ---- stages ---------------------------------------------------------------------------------- */

/* Runs the normalizers over s; *out points at s itself (no normalizer) or into sc->norm. */
int tok_normalize(const tokenizer *tk, tok_scratch *sc, const char *s, size_t n, const char **out,
                  size_t *out_n);
/* Splits s into words; returns the pieces (owned by sc, valid until the next call). */
int tok_pretokenize(const tokenizer *tk, tok_scratch *sc, const char *s, size_t n, bool first,
                    const tok_pieces **out);
/* Appends the BPE ids of one word. */
int tok_bpe_word(const tokenizer *tk, tok_scratch *sc, const char *w, size_t n, tok_ids *out);
/* Sets tk->whole: which vocabulary tokens BPE produces from their own string (a read-only word
 * cache: a word that is such a token needs no merging). Needs char_id and byte_id. */
int tok_bpe_whole_words(tokenizer *tk);
/* The two merge loops, exposed for the tests: both must give the same result. ids[0, *n) holds
 * one symbol per character on entry and the merged symbols on return. The small one rescans an
 * array of pair ranks (fast for words up to TOK_BPE_SMALL symbols, its limit); the heap one is
 * O(n log n) for anything longer. */
#define TOK_BPE_SMALL 64
int tok_bpe_merge_small(const tok_merges *m, int32_t *ids, size_t *n);
int tok_bpe_merge_heap(const tok_merges *m, tok_scratch *sc, int32_t *ids, size_t *n);

/* Added-token splitting: segments of s that are an added token (id >= 0) or plain text (id -1). */
int tok_added_split(const tokenizer *tk, const tok_matcher *m, const char *s, size_t n, pcre2_match_data *md,
                    tok_segs *out);
int tok_matcher_build(tokenizer *tk, tok_matcher *m, bool normalized);
void tok_matcher_free(tok_matcher *m);

/* Decoder chain over tokens; writes the final text to out. */
int tok_decode_tokens(const tokenizer *tk, const char **tok, const size_t *len, size_t n, tok_buf *out);

/* ---- loading (tokenizer_load.c, pipeline_load.c) --------------------------------------------- */

typedef struct cJSON cJSON;

/* Appends s (NUL-terminated in the arena); *off receives its offset. */
int tok_arena_add(tokenizer *tk, const char *s, size_t n, uint32_t *off);
/* Fill a zeroed tokenizer (bytes_to_unicode set) from tokenizer.json, or from GPT-2's two files
 * (which also get GPT-2's pre-tokenizer and decoder). On error the caller frees tk. */
int tok_load_json(tokenizer *tk, const char *path);
/* The same from a parsed tokenizer.json; `file` names it in messages. */
int tok_parse_json(tokenizer *tk, const cJSON *root, const char *file);
int tok_load_gpt2(tokenizer *tk, const char *vocab_path, const char *merges_path);
/* normalizer, pre_tokenizer, post_processor and decoder of a tokenizer.json root. */
int tok_load_pipeline(tokenizer *tk, const cJSON *root, const char *file);
/* Builds the id table, character and byte ids, the whole-word bits, special flags and the
 * added-token matchers, once the model, added tokens and pipeline are loaded. */
int tok_build_tables(tokenizer *tk);
/* bos_token / eos_token of dir/tokenizer_config.json, if that file exists. */
int tok_load_config(tokenizer *tk, const char *dir);
/* GPT-2's pre-tokenizer regex (ByteLevel with use_regex). */
extern const char tok_gpt2_regex[];
/* Frees what tok_load_pipeline allocated (safe on a partly loaded tokenizer). */
void tok_pipeline_free(tokenizer *tk);
/* Feeds the normalizers, pre-tokenizers and post-processor ids into f. */
void tok_fp_pipeline(const tokenizer *tk, tok_fp *f);
/* Fills byte_char/char_byte with GPT-2's bytes_to_unicode. */
void tok_bytes_to_unicode(tokenizer *tk);
/* Id of a token string: added tokens first, then the model; -1 if absent. */
int32_t tok_token_id(const tokenizer *tk, const char *s, size_t n);

#endif
