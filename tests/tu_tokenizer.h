/*
 * tu_tokenizer.h - what the tokenizer tests (test_tokenizer*.c) share: tokenizers loaded from
 * tokenizer.json strings written with single quotes, and id comparisons that print both sides.
 *
 *     static int setup(void **s) / teardown: use tu_tok_setup / tu_tok_teardown as the group's
 *     tokenizer *tk = tu_tok_load_str("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]," TU_MODEL_TAIL "}");
 *     TU_EXPECT_IDS(tk, "aa", false, 0, 0);
 *
 * Failures fail the current cmocka test.
 */
#ifndef PEFT_TU_TOKENIZER_H
#define PEFT_TU_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* The end of a BPE "model" object without unk, fuse_unk or byte_fallback. */
#define TU_MODEL_TAIL "'unk_token':null,'fuse_unk':false,'byte_fallback':false}"

/* A tiny GPT-2-style byte-level tokenizer: "hello world" is [11, 16], "<s>" (17) is special and
 * the post-processor prepends it. */
extern const char *const TU_TINY_BYTELEVEL;

/* The directory tu_tok_load_str* write into: made by tu_tok_setup (a cmocka group setup), removed
 * by tu_tok_teardown. */
extern char *tu_tok_dir;
int tu_tok_setup(void **state);
int tu_tok_teardown(void **state);

/* Writes json (single quotes become double quotes) to tu_tok_dir/name and loads it; returns
 * tokenizer_load's status. */
int tu_tok_load_str_as(const char *json, const char *name, tokenizer **tk);
/* The same into tokenizer.json; fails the test unless it loads. */
tokenizer *tu_tok_load_str(const char *json);

bool tu_same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb);
/* "1,2,3" into buf (truncated to cap). */
void tu_ids_str(const int32_t *v, size_t n, char *buf, size_t cap);

/* Encodes text (special: with the post-processor's tokens) and compares with the expected ids. */
void tu_expect_ids(const tokenizer *tk, const char *text, bool special, const int32_t *want, size_t nwant);
#define TU_EXPECT_IDS(tk, text, special, ...)                                                        \
    do {                                                                                             \
        const int32_t want_[] = {__VA_ARGS__};                                                       \
        tu_expect_ids((tk), (text), (special), want_, sizeof want_ / sizeof want_[0]);               \
    } while (0)

/* Decodes ids (skip: without special tokens) and compares with the expected text. */
void tu_expect_decode(const tokenizer *tk, const int32_t *ids, size_t n, bool skip, const char *want);
#define TU_EXPECT_DECODE(tk, skip, want, ...)                                                        \
    do {                                                                                             \
        const int32_t ids_[] = {__VA_ARGS__};                                                        \
        tu_expect_decode((tk), ids_, sizeof ids_ / sizeof ids_[0], (skip), (want));                  \
    } while (0)

#endif
