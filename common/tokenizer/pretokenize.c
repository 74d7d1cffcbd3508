/*
 * pretokenize.c - the pre-tokenizer chain (ByteLevel, Split, Metaspace, Digits; a Sequence is
 * flattened at load) and the per-call scratch.
 *
 * A stage maps every input piece to output pieces whose bytes it copies into its own buffer; the
 * two tok_pieces of the scratch alternate between stages. Splitting follows HF's
 * NormalizedString::split: the matches and the gaps between them form a list of parts covering the
 * piece, the behaviour merges or drops parts, and empty parts disappear.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int tok_scratch_init(tok_scratch *sc) {
    memset(sc, 0, sizeof *sc);
    sc->md = pcre2_match_data_create(1, NULL);
    if (!sc->md) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate PCRE2 match data");
    return PEFT_OK;
}

void tok_scratch_free(tok_scratch *sc) {
    pcre2_match_data_free(sc->md);
    for (int i = 0; i < 2; i++) {
        free(sc->norm[i].p);
        free(sc->pieces[i].v);
        free(sc->pieces[i].text.p);
    }
    free(sc->tmp.p);
    free(sc->cps.p);
    free(sc->parts.v);
    free(sc->segs.v);
    free(sc->nsegs.v);
    free(sc->word);
    free(sc->syms);
    free(sc->heap);
    memset(sc, 0, sizeof *sc);
}

static int pieces_add(tok_pieces *ps, size_t off, size_t len, bool first) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        tok_piece *v = realloc(ps->v, cap * sizeof *v);
        if (!v) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate %zu pieces", cap);
        ps->v = v;
        ps->cap = cap;
    }
    ps->v[ps->n++] = (tok_piece){off, len, first};
    return PEFT_OK;
}

int tok_pieces_push(tok_pieces *ps, const char *s, size_t n, bool first) {
    if (n == 0) return PEFT_OK;
    size_t off = ps->text.n;
    PEFT_TRY(tok_buf_append(&ps->text, s, n));
    return pieces_add(ps, off, n, first);
}

int tok_segs_push(tok_segs *sg, size_t start, size_t end, int32_t id) {
    if (sg->n == sg->cap) {
        size_t cap = sg->cap ? sg->cap * 2 : 64;
        tok_seg *v = realloc(sg->v, cap * sizeof *v);
        if (!v) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate %zu segments", cap);
        sg->v = v;
        sg->cap = cap;
    }
    sg->v[sg->n++] = (tok_seg){start, end, id};
    return PEFT_OK;
}

/* The parts of s: matches (id 1) and the gaps between them (id 0), in order, covering s. */
static int find_parts(const tok_pattern *pat, tok_scratch *sc, const char *s, size_t n, tok_segs *parts) {
    parts->n = 0;
    tok_find f;
    tok_find_init(&f, pat, s, n, sc->md);
    size_t prev = 0, ms, me;
    int rc;
    while ((rc = tok_find_next(&f, &ms, &me)) == 1) {
        if (ms > prev) PEFT_TRY(tok_segs_push(parts, prev, ms, 0));
        PEFT_TRY(tok_segs_push(parts, ms, me, 1));
        prev = me;
    }
    if (rc < 0) return rc;
    if (prev < n) PEFT_TRY(tok_segs_push(parts, prev, n, 0));
    return PEFT_OK;
}

/* Applies a split behaviour to parts in place; returns how many ranges remain. */
static size_t apply_behavior(tok_seg *p, size_t n, enum tok_split_behavior b) {
    size_t w = 0;
    bool prev = false;
    if (n == 0) return 0;
    switch (b) {
    case TOK_SPLIT_ISOLATED: return n;
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!p[i].id) p[w++] = p[i];
        return w;
    case TOK_SPLIT_CONTIGUOUS:
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            bool m = p[i].id != 0;
            bool merge = b == TOK_SPLIT_CONTIGUOUS ? m == prev : (m && !prev);
            if (merge && w > 0) p[w - 1].end = p[i].end;
            else p[w++] = p[i];
            prev = m;
        }
        return w;
    case TOK_SPLIT_MERGED_NEXT:
        w = n; /* the result grows down from the end */
        for (size_t i = n; i-- > 0;) {
            bool m = p[i].id != 0;
            if (m && !prev && w < n) p[w].start = p[i].start;
            else p[--w] = p[i];
            prev = m;
        }
        memmove(p, p + w, (n - w) * sizeof *p);
        return n - w;
    }
    return n;
}

static int split_stage(const tok_pattern *pat, enum tok_split_behavior b, bool invert, tok_scratch *sc,
                       const char *s, size_t n, bool first, tok_pieces *out) {
    PEFT_TRY(find_parts(pat, sc, s, n, &sc->parts));
    if (invert)
        for (size_t i = 0; i < sc->parts.n; i++) sc->parts.v[i].id = !sc->parts.v[i].id;
    size_t k = apply_behavior(sc->parts.v, sc->parts.n, b);
    for (size_t i = 0; i < k; i++) {
        const tok_seg *p = &sc->parts.v[i];
        PEFT_TRY(tok_pieces_push(out, s + p->start, p->end - p->start, first && p->start == 0));
    }
    return PEFT_OK;
}

static int push_bytelevel(const tokenizer *tk, tok_pieces *out, const char *s, size_t n, bool first) {
    if (n == 0) return PEFT_OK;
    tok_buf *t = &out->text;
    PEFT_TRY(tok_buf_reserve(t, 2 * n));
    size_t off = t->n;
    char *o = t->p + t->n;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        o[0] = tk->byte_char[c][0];
        o[1] = tk->byte_char[c][1];
        o += tk->byte_char_len[c];
    }
    t->n = (size_t)(o - t->p);
    return pieces_add(out, off, t->n - off, first);
}

static int bytelevel_stage(const tokenizer *tk, const tok_pretok *pt, tok_scratch *sc, const char *s, size_t n,
                           bool first, tok_pieces *out) {
    if (n == 0) return PEFT_OK;
    if (pt->add_prefix_space && s[0] != ' ') {
        sc->tmp.n = 0;
        PEFT_TRY(tok_buf_append(&sc->tmp, " ", 1));
        PEFT_TRY(tok_buf_append(&sc->tmp, s, n));
        s = sc->tmp.p;
        n = sc->tmp.n;
    }
    if (!pt->use_regex) return push_bytelevel(tk, out, s, n, first);
    tok_find f;
    tok_find_init(&f, &pt->pat, s, n, sc->md);
    size_t prev = 0, ms, me;
    int rc;
    while ((rc = tok_find_next(&f, &ms, &me)) == 1) {
        PEFT_TRY(push_bytelevel(tk, out, s + prev, ms - prev, first && prev == 0));
        PEFT_TRY(push_bytelevel(tk, out, s + ms, me - ms, first && ms == 0));
        prev = me;
    }
    if (rc < 0) return rc;
    return push_bytelevel(tk, out, s + prev, n - prev, first && prev == 0);
}

static int metaspace_stage(const tok_pretok *pt, tok_scratch *sc, const char *s, size_t n, bool first,
                           tok_pieces *out) {
    if (n == 0) return PEFT_OK;
    tok_buf *t = &sc->tmp;
    t->n = 0;
    bool starts = n >= (size_t)pt->rep_len && memcmp(s, pt->rep, (size_t)pt->rep_len) == 0;
    if (s[0] == ' ') starts = true; /* the space is replaced below */
    if (!starts && (pt->prepend == TOK_PREPEND_ALWAYS || (pt->prepend == TOK_PREPEND_FIRST && first)))
        PEFT_TRY(tok_buf_append(t, pt->rep, (size_t)pt->rep_len));
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j] != ' ') j++;
        PEFT_TRY(tok_buf_append(t, s + i, j - i));
        if (j < n) PEFT_TRY(tok_buf_append(t, pt->rep, (size_t)pt->rep_len));
        i = j + 1;
    }
    if (!pt->split) return tok_pieces_push(out, t->p, t->n, first);
    return split_stage(&pt->pat, TOK_SPLIT_MERGED_NEXT, false, sc, t->p, t->n, first, out);
}

static int run_stage(const tokenizer *tk, const tok_pretok *pt, tok_scratch *sc, const char *s, size_t n,
                     bool first, tok_pieces *out) {
    switch (pt->type) {
    case TOK_PRE_BYTELEVEL: return bytelevel_stage(tk, pt, sc, s, n, first, out);
    case TOK_PRE_METASPACE: return metaspace_stage(pt, sc, s, n, first, out);
    case TOK_PRE_SPLIT:
    case TOK_PRE_DIGITS: return split_stage(&pt->pat, pt->behavior, pt->invert, sc, s, n, first, out);
    }
    return PEFT_OK;
}

int tok_pretokenize(const tokenizer *tk, tok_scratch *sc, const char *s, size_t n, bool first,
                    const tok_pieces **out) {
    tok_pieces *cur = &sc->pieces[0];
    cur->n = cur->text.n = 0;
    if (tk->n_pre == 0 || n == 0) {
        PEFT_TRY(tok_pieces_push(cur, s, n, first));
        *out = cur;
        return PEFT_OK;
    }
    PEFT_TRY(run_stage(tk, &tk->pre[0], sc, s, n, first, cur));
    for (size_t k = 1; k < tk->n_pre; k++) {
        tok_pieces *next = &sc->pieces[k & 1];
        next->n = next->text.n = 0;
        for (size_t i = 0; i < cur->n; i++) {
            const tok_piece *p = &cur->v[i];
            PEFT_TRY(run_stage(tk, &tk->pre[k], sc, cur->text.p + p->off, p->len, p->first, next));
        }
        cur = next;
    }
    *out = cur;
    return PEFT_OK;
}
