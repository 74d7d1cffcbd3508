/*
 * decode.c - the decoder chain (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip; a
 * Sequence is flattened at load), as HF's Decoder::decode_chain: each decoder maps the list of
 * token strings to a new list, and the final list is concatenated.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

/* A list of strings stored back to back in one buffer. */
typedef struct tlist {
    tok_buf text;
    size_t *end; /* [n] end offset of each string; string i starts at end[i - 1] (0 for i = 0) */
    size_t n, cap;
} tlist;

static const char *tl_str(const tlist *l, size_t i, size_t *len) {
    size_t start = i ? l->end[i - 1] : 0;
    *len = l->end[i] - start;
    return l->text.p + start;
}

/* Closes the string that was appended to l->text since the previous close. */
static int tl_close(tlist *l) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *e = realloc(l->end, cap * sizeof *e);
        if (!e) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate %zu decoded tokens", cap);
        l->end = e;
        l->cap = cap;
    }
    l->end[l->n++] = l->text.n;
    return PEFT_OK;
}

static int tl_push(tlist *l, const char *s, size_t n) {
    PEFT_TRY(tok_buf_append(&l->text, s, n));
    return tl_close(l);
}

static int dec_bytelevel(const tokenizer *tk, const tlist *in, tlist *out) {
    tok_buf bytes = {0};
    int rc = PEFT_OK;
    for (size_t i = 0; i < in->n && rc == PEFT_OK; i++) {
        size_t n, at = bytes.n;
        const char *s = tl_str(in, i, &n);
        for (size_t k = 0; k < n && rc == PEFT_OK;) {
            int len;
            uint32_t cp = utf8_next(s + k, &len);
            k += (size_t)len;
            if (cp >= 324 || tk->char_byte[cp] < 0) { /* not all byte characters: keep the token as is */
                bytes.n = at;
                rc = tok_buf_append(&bytes, s, n);
                break;
            }
            char b = (char)tk->char_byte[cp];
            rc = tok_buf_append(&bytes, &b, 1);
        }
    }
    if (rc == PEFT_OK) rc = utf8_append_lossy(&out->text, bytes.p ? bytes.p : "", bytes.n);
    if (rc == PEFT_OK) rc = tl_close(out);
    free(bytes.p);
    return rc;
}

static int dec_metaspace(const tok_decoder *d, const tlist *in, tlist *out) {
    for (size_t i = 0; i < in->n; i++) {
        size_t n;
        const char *s = tl_str(in, i, &n);
        for (size_t k = 0; k < n;) {
            int len;
            uint32_t cp = utf8_next(s + k, &len);
            if (cp != d->ch) PEFT_TRY(tok_buf_append(&out->text, s + k, (size_t)len));
            else if (i != 0 || d->prepend == TOK_PREPEND_NEVER) PEFT_TRY(tok_buf_append(&out->text, " ", 1));
            k += (size_t)len;
        }
        PEFT_TRY(tl_close(out));
    }
    return PEFT_OK;
}

static int dec_replace(const tok_decoder *d, pcre2_match_data *md, const tlist *in, tlist *out) {
    for (size_t i = 0; i < in->n; i++) {
        size_t n, prev = 0, ms, me;
        const char *s = tl_str(in, i, &n);
        tok_find f;
        tok_find_init(&f, &d->pat, s, n, md);
        int rc;
        while ((rc = tok_find_next(&f, &ms, &me)) == 1) {
            PEFT_TRY(tok_buf_append(&out->text, s + prev, ms - prev));
            PEFT_TRY(tok_buf_append(&out->text, d->str, d->str_len));
            prev = me;
        }
        if (rc < 0) return rc;
        PEFT_TRY(tok_buf_append(&out->text, s + prev, n - prev));
        PEFT_TRY(tl_close(out));
    }
    return PEFT_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a "<0xXX>" token (Rust's u8::from_str_radix also takes "+X"), or -1. */
static int fallback_byte(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    if (s[3] == '+' && lo >= 0) return lo;
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Pending bytes become one token if they are valid UTF-8, else one U+FFFD per byte (HF). */
static int flush_bytes(tok_buf *bytes, tlist *out) {
    if (bytes->n == 0) return PEFT_OK;
    if (utf8_check(bytes->p, bytes->n) == bytes->n) {
        PEFT_TRY(tl_push(out, bytes->p, bytes->n));
    } else {
        for (size_t i = 0; i < bytes->n; i++) PEFT_TRY(tl_push(out, "\xEF\xBF\xBD", 3));
    }
    bytes->n = 0;
    return PEFT_OK;
}

static int dec_bytefallback(const tlist *in, tlist *out) {
    tok_buf bytes = {0};
    int rc = PEFT_OK;
    for (size_t i = 0; i < in->n && rc == PEFT_OK; i++) {
        size_t n;
        const char *s = tl_str(in, i, &n);
        int b = fallback_byte(s, n);
        if (b >= 0) {
            char c = (char)b;
            rc = tok_buf_append(&bytes, &c, 1);
        } else {
            rc = flush_bytes(&bytes, out);
            if (rc == PEFT_OK) rc = tl_push(out, s, n);
        }
    }
    if (rc == PEFT_OK) rc = flush_bytes(&bytes, out);
    free(bytes.p);
    return rc;
}

static int dec_strip(const tok_decoder *d, const tlist *in, tlist *out) {
    for (size_t i = 0; i < in->n; i++) {
        size_t n;
        const char *s = tl_str(in, i, &n);
        size_t a = 0, b = n;
        int len;
        for (int k = 0; k < d->start && a < n && utf8_next(s + a, &len) == d->ch; k++) a += (size_t)len;
        for (int k = 0; k < d->stop && b > a; k++) {
            size_t c = b - 1;
            while (c > a && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
            if (utf8_next(s + c, &len) != d->ch) break;
            b = c;
        }
        PEFT_TRY(tl_push(out, s + a, b - a));
    }
    return PEFT_OK;
}

static int run_decoder(const tokenizer *tk, const tok_decoder *d, pcre2_match_data *md, const tlist *in,
                       tlist *out) {
    switch (d->type) {
    case TOK_DEC_BYTELEVEL: return dec_bytelevel(tk, in, out);
    case TOK_DEC_METASPACE: return dec_metaspace(d, in, out);
    case TOK_DEC_REPLACE: return dec_replace(d, md, in, out);
    case TOK_DEC_BYTEFALLBACK: return dec_bytefallback(in, out);
    case TOK_DEC_FUSE: PEFT_TRY(tok_buf_append(&out->text, in->text.p, in->text.n)); return tl_close(out);
    case TOK_DEC_STRIP: return dec_strip(d, in, out);
    }
    return PEFT_OK;
}

int tok_decode_tokens(const tokenizer *tk, const char **tok, const size_t *len, size_t n, tok_buf *out) {
    if (!tk->has_decoder) {
        for (size_t i = 0; i < n; i++) {
            if (i) PEFT_TRY(tok_buf_append(out, " ", 1));
            PEFT_TRY(tok_buf_append(out, tok[i], len[i]));
        }
        return PEFT_OK;
    }
    tlist l[2];
    memset(l, 0, sizeof l);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int rc = md ? PEFT_OK : err_set(PEFT_ENOMEM, "tokenizer: cannot allocate PCRE2 match data");
    for (size_t i = 0; i < n && rc == PEFT_OK; i++) rc = tl_push(&l[0], tok[i], len[i]);
    size_t cur = 0;
    for (size_t k = 0; k < tk->n_dec && rc == PEFT_OK; k++) {
        tlist *next = &l[cur ^ 1];
        next->n = next->text.n = 0;
        rc = run_decoder(tk, &tk->dec[k], md, &l[cur], next);
        cur ^= 1;
    }
    if (rc == PEFT_OK) rc = tok_buf_append(out, l[cur].text.p, l[cur].text.n);
    for (int i = 0; i < 2; i++) {
        free(l[i].text.p);
        free(l[i].end);
    }
    pcre2_match_data_free(md);
    return rc;
}
