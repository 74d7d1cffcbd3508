/*
 * normalize.c - the normalizer chain: NFC, Prepend, Replace (a Sequence is flattened at load).
 *
 * Each step reads the previous step's output and writes the other of two scratch buffers. HF runs
 * the chain once per segment between added tokens, so Prepend adds its prefix to every segment.
 */
#include "tokenizer_impl.h"

#include "error.h"

static int replace_all(const tok_normalizer *nm, tok_scratch *sc, const char *s, size_t n, tok_buf *dst) {
    tok_find f;
    tok_find_init(&f, &nm->pat, s, n, sc->md);
    size_t prev = 0, ms, me;
    int rc;
    while ((rc = tok_find_next(&f, &ms, &me)) == 1) {
        PEFT_TRY(tok_buf_append(dst, s + prev, ms - prev));
        PEFT_TRY(tok_buf_append(dst, nm->str, nm->str_len));
        prev = me;
    }
    if (rc < 0) return rc;
    return tok_buf_append(dst, s + prev, n - prev);
}

int tok_normalize(const tokenizer *tk, tok_scratch *sc, const char *s, size_t n, const char **out,
                  size_t *out_n) {
    const char *cur = s;
    size_t cur_n = n;
    for (size_t i = 0; i < tk->n_norm; i++) {
        const tok_normalizer *nm = &tk->norm[i];
        tok_buf *dst = &sc->norm[i & 1];
        dst->n = 0;
        switch (nm->type) {
        case TOK_NORM_NFC: PEFT_TRY(nfc_append(cur, cur_n, dst, &sc->cps)); break;
        case TOK_NORM_PREPEND:
            if (cur_n) PEFT_TRY(tok_buf_append(dst, nm->str, nm->str_len));
            PEFT_TRY(tok_buf_append(dst, cur, cur_n));
            break;
        case TOK_NORM_REPLACE: PEFT_TRY(replace_all(nm, sc, cur, cur_n, dst)); break;
        }
        cur = dst->n ? dst->p : "";
        cur_n = dst->n;
    }
    *out = cur;
    *out_n = cur_n;
    return PEFT_OK;
}
