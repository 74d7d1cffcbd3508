/*
 * pattern.c - regexes and literals with the matching rules of Hugging Face `tokenizers`.
 *
 * HF compiles Split/Replace/ByteLevel regexes with Oniguruma; PCRE2 (UTF + UCP) accepts the same
 * syntax for every pattern tokenizers ship (GPT-2, Llama 3, Qwen2, ...), with one difference we
 * patch: Oniguruma's \s is Unicode White_Space, PCRE2's also matches U+180E. So \s and \S become
 * \p{White_Space} and \P{White_Space} before compiling. Matches are iterated like onig's
 * find_iter: leftmost, non-overlapping, and an empty match right where the previous one ended is
 * skipped by advancing one character.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

static char *rewrite_spaces(const char *src) {
    size_t n = strlen(src), extra = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (src[i] == '\\') {
            if (src[i + 1] == 's' || src[i + 1] == 'S') extra += 14;
            i++;
        }
    char *out = malloc(n + extra + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\\' && i + 1 < n) {
            char c = src[++i];
            if (c == 's' || c == 'S') {
                memcpy(o, c == 's' ? "\\p{White_Space}" : "\\P{White_Space}", 15);
                o += 15;
            } else {
                *o++ = '\\';
                *o++ = c;
            }
            continue;
        }
        *o++ = src[i];
    }
    *o = '\0';
    return out;
}

int tok_pattern_regex(tok_pattern *p, const char *src, const char *where) {
    memset(p, 0, sizeof *p);
    p->lit_len = strlen(src);
    p->lit = strdup(src);
    char *pcre = rewrite_spaces(src);
    if (!p->lit || !pcre) {
        free(pcre);
        tok_pattern_free(p);
        return err_set(PEFT_ENOMEM, "%s: cannot allocate the regex", where);
    }
    int code;
    PCRE2_SIZE at;
    p->re = pcre2_compile((PCRE2_SPTR)pcre, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    free(pcre);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        tok_pattern_free(p);
        return err_set(PEFT_EUNSUPPORTED, "%s: regex '%s' does not compile (PCRE2, near offset %zu): %s", where,
                       src, (size_t)at, (const char *)msg);
    }
    /* Without JIT (no support on this CPU) the interpreter gives the same matches, only slower. */
    p->jit = pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == 0;
    return PEFT_OK;
}

int tok_pattern_literal(tok_pattern *p, const char *s, size_t n) {
    memset(p, 0, sizeof *p);
    p->lit = malloc(n + 1);
    if (!p->lit) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate a pattern");
    memcpy(p->lit, s, n);
    p->lit[n] = '\0';
    p->lit_len = n;
    return PEFT_OK;
}

void tok_pattern_free(tok_pattern *p) {
    pcre2_code_free(p->re);
    free(p->lit);
    memset(p, 0, sizeof *p);
}

void tok_find_init(tok_find *f, const tok_pattern *p, const char *s, size_t n, pcre2_match_data *md) {
    *f = (tok_find){.pat = p, .s = s, .n = n, .md = md};
    /* HF: an empty literal never matches (the whole input is one non-match). */
    if (!p->re && p->lit_len == 0) f->done = true;
}

static int regex_at(tok_find *f, size_t *ms, size_t *me) {
    const tok_pattern *p = f->pat;
    int rc = p->jit ? pcre2_jit_match(p->re, (PCRE2_SPTR)f->s, f->n, f->pos, 0, f->md, NULL)
                    : PCRE2_ERROR_JIT_STACKLIMIT;
    /* The JIT stack (32 KiB) can run out on long inputs; the interpreter keeps its frames on the
     * heap. */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(p->re, (PCRE2_SPTR)f->s, f->n, f->pos, PCRE2_NO_JIT | PCRE2_NO_UTF_CHECK, f->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return err_set(PEFT_EINTERNAL, "tokenizer: regex '%s' failed on a %zu-byte input: %s", p->lit, f->n,
                       (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(f->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

int tok_find_next(tok_find *f, size_t *start, size_t *end) {
    while (!f->done && f->pos <= f->n) {
        size_t ms, me;
        if (f->pat->re) {
            int rc = regex_at(f, &ms, &me);
            if (rc < 0) return rc;
            if (rc == 0) break;
        } else {
            const char *hit = memmem(f->s + f->pos, f->n - f->pos, f->pat->lit, f->pat->lit_len);
            if (!hit) break;
            ms = (size_t)(hit - f->s);
            me = ms + f->pat->lit_len;
        }
        if (ms == me && f->has_last && f->last_end == me) {
            if (f->pos >= f->n) break;
            f->pos += (size_t)utf8_len((unsigned char)f->s[f->pos]);
            continue;
        }
        f->pos = f->last_end = me;
        f->has_last = true;
        *start = ms;
        *end = me;
        return 1;
    }
    f->done = true;
    return 0;
}
