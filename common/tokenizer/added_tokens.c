/*
 * added_tokens.c - splitting text on added tokens, as HF's AddedVocabulary::find_matches does.
 *
 * Tokens are found leftmost-longest and non-overlapping (HF uses an Aho-Corasick automaton with
 * MatchKind::LeftmostLongest; we bucket the tokens by first byte, longest first, which finds the
 * same matches). A single_word token whose match touches a word character (Rust regex \w) on either
 * side is dropped, and its text stays plain text. lstrip/rstrip make the token's segment swallow
 * the whitespace before/after it.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

static const char *pattern_of(const tokenizer *tk, const tok_added *a, size_t *len) {
    *len = a->normalized ? a->norm_len : a->len;
    return a->normalized ? a->norm : tk->arena + a->off;
}

typedef struct {
    unsigned first;
    size_t len;
    int32_t idx;
} sort_key;

static int cmp_key(const void *pa, const void *pb) {
    const sort_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

int tok_matcher_build(tokenizer *tk, tok_matcher *m, bool normalized) {
    memset(m, 0, sizeof *m);
    sort_key *keys = malloc((tk->n_added + 1) * sizeof *keys);
    if (!keys) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate the added-token matcher");
    size_t n = 0;
    for (size_t i = 0; i < tk->n_added; i++) {
        size_t len;
        const char *p = pattern_of(tk, &tk->added[i], &len);
        if (tk->added[i].normalized != normalized || len == 0) continue;
        keys[n++] = (sort_key){(unsigned char)p[0], len, (int32_t)i};
    }
    qsort(keys, n, sizeof *keys, cmp_key);
    m->tok = malloc((n + 1) * sizeof *m->tok);
    if (!m->tok) {
        free(keys);
        return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate the added-token matcher");
    }
    size_t k = 0;
    for (unsigned b = 0; b < 256; b++) {
        m->first[b] = (uint32_t)k;
        while (k < n && keys[k].first == b) {
            m->tok[k] = keys[k].idx;
            k++;
        }
    }
    m->first[256] = (uint32_t)n;
    m->n = n;
    free(keys);
    return PEFT_OK;
}

void tok_matcher_free(tok_matcher *m) {
    free(m->tok);
    memset(m, 0, sizeof *m);
}

static bool is_word(const tokenizer *tk, uint32_t cp, pcre2_match_data *md) {
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '_';
    char buf[4];
    int len = utf8_put(cp, buf);
    return pcre2_match(tk->word_re, (PCRE2_SPTR)buf, (size_t)len, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md,
                       NULL) >= 0;
}

/* Start of the character that ends at s[end] (exclusive). */
static size_t char_before(const char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

/* Offset where the run of whitespace that ends at `end` begins. */
static size_t space_run_start(const char *s, size_t end) {
    while (end > 0) {
        size_t i = char_before(s, end);
        int len;
        if (!uni_is_space(utf8_next(s + i, &len))) break;
        end = i;
    }
    return end;
}

/* Offset where the run of whitespace that starts at `start` ends. */
static size_t space_run_end(const char *s, size_t n, size_t start) {
    while (start < n) {
        int len;
        if (!uni_is_space(utf8_next(s + start, &len))) break;
        start += (size_t)len;
    }
    return start;
}

/* Leftmost-longest match at or after pos: its token index, or -1. */
static int32_t find_next(const tokenizer *tk, const tok_matcher *m, const char *s, size_t n, size_t pos,
                         size_t *at) {
    for (size_t i = pos; i < n; i++) {
        unsigned c = (unsigned char)s[i];
        for (uint32_t k = m->first[c]; k < m->first[c + 1]; k++) {
            size_t len;
            const char *p = pattern_of(tk, &tk->added[m->tok[k]], &len);
            if (len <= n - i && memcmp(s + i, p, len) == 0) {
                *at = i;
                return m->tok[k];
            }
        }
    }
    return -1;
}

int tok_added_split(const tokenizer *tk, const tok_matcher *m, const char *s, size_t n, pcre2_match_data *md,
                    tok_segs *out) {
    out->n = 0;
    size_t done = 0, pos = 0, ms;
    int32_t idx;
    while (m->n && pos < n && (idx = find_next(tk, m, s, n, pos, &ms)) >= 0) {
        const tok_added *a = &tk->added[idx];
        size_t plen, me;
        pattern_of(tk, a, &plen);
        me = ms + plen;
        pos = me;
        if (a->single_word) {
            int len;
            bool word_before = ms > 0 && is_word(tk, utf8_next(s + char_before(s, ms), &len), md);
            bool word_after = me < n && is_word(tk, utf8_next(s + me, &len), md);
            if (word_before || word_after) continue;
        }
        size_t start = ms, stop = me;
        if (a->lstrip) {
            start = space_run_start(s, ms);
            if (start < done) start = done;
        }
        if (a->rstrip) stop = space_run_end(s, n, me);
        if (done < start) PEFT_TRY(tok_segs_push(out, done, start, -1));
        PEFT_TRY(tok_segs_push(out, start, stop, a->id));
        done = stop;
    }
    if (done < n) PEFT_TRY(tok_segs_push(out, done, n, -1));
    return PEFT_OK;
}
