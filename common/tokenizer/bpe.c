/*
 * bpe.c - the BPE model: one pre-tokenized word -> ids.
 *
 * As in HF's BPE::merge_word + Word::merge_all: each character becomes its vocabulary id (else its
 * <0xXX> byte tokens with byte_fallback, else the unk token, fused with a neighbouring unk when
 * fuse_unk, else nothing), then the pair of adjacent symbols with the lowest merge rank is merged,
 * leftmost first on ties, until no adjacent pair has a merge.
 *
 * Instead of a mutable word cache (the tokenizer is read-only so threads can share it), load time
 * runs BPE once over every vocabulary token and remembers which ones come back as themselves; a
 * word that is such a token is emitted after one hash lookup. Most words of natural text are.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct bpe_sym {
    int32_t id, prev, next; /* id -1: merged into its left neighbour */
} bpe_sym;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return PEFT_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate BPE scratch for %zu symbols", c);
    *p = q;
    *cap = c;
    return PEFT_OK;
}

static inline void pair_rank(const tok_merges *m, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
    const tok_merge_slot *s = tok_merges_get(m, a, b);
    *rank = s ? s->rank : INT32_MAX;
    *id = s ? s->id : -1;
}

int tok_bpe_merge_small(const tok_merges *m, int32_t *ids, size_t *np) {
    size_t n = *np;
    PEFT_ASSERT(n <= TOK_BPE_SMALL);
    if (n < 2) return PEFT_OK;
    int32_t rank[TOK_BPE_SMALL], nid[TOK_BPE_SMALL]; /* of the pair (ids[i], ids[i + 1]) */
    for (size_t i = 0; i + 1 < n; i++) pair_rank(m, ids[i], ids[i + 1], &rank[i], &nid[i]);
    for (;;) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == INT32_MAX) break;
        ids[best] = nid[best];
        size_t tail = n - best - 2; /* symbols after the removed right half */
        memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
        memmove(rank + best + 1, rank + best + 2, (tail ? tail - 1 : 0) * sizeof *rank);
        memmove(nid + best + 1, nid + best + 2, (tail ? tail - 1 : 0) * sizeof *nid);
        n--;
        if (n < 2) break;
        if (best > 0) pair_rank(m, ids[best - 1], ids[best], &rank[best - 1], &nid[best - 1]);
        if (best + 1 < n) pair_rank(m, ids[best], ids[best + 1], &rank[best], &nid[best]);
    }
    *np = n;
    return PEFT_OK;
}

/* Min-heap of rank << 32 | position. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

int tok_bpe_merge_heap(const tok_merges *m, tok_scratch *sc, int32_t *ids, size_t *np) {
    size_t n = *np;
    if (n < 2) return PEFT_OK;
    PEFT_TRY(grow(&sc->syms, &sc->syms_cap, n, sizeof(bpe_sym)));
    PEFT_TRY(grow((void **)&sc->heap, &sc->heap_cap, 3 * n, sizeof *sc->heap));
    bpe_sym *s = sc->syms;
    uint64_t *h = sc->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) s[i] = (bpe_sym){ids[i], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    for (size_t i = 0; i + 1 < n; i++) {
        const tok_merge_slot *ms = tok_merges_get(m, ids[i], ids[i + 1]);
        if (ms) heap_push(h, &hn, (uint64_t)ms->rank << 32 | i);
    }
    while (hn) {
        uint64_t top = heap_pop(h, &hn);
        int32_t rank = (int32_t)(top >> 32), pos = (int32_t)(uint32_t)top;
        bpe_sym *l = &s[pos];
        if (l->id < 0 || l->next < 0) continue;
        bpe_sym *r = &s[l->next];
        const tok_merge_slot *ms = tok_merges_get(m, l->id, r->id);
        if (!ms || ms->rank != rank) continue; /* a stale entry: this pair changed since */
        l->id = ms->id;
        r->id = -1;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = pos;
        if (l->prev >= 0 && (ms = tok_merges_get(m, s[l->prev].id, l->id)))
            heap_push(h, &hn, (uint64_t)ms->rank << 32 | (uint32_t)l->prev);
        if (l->next >= 0 && (ms = tok_merges_get(m, l->id, s[l->next].id)))
            heap_push(h, &hn, (uint64_t)ms->rank << 32 | (uint32_t)pos);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = s[i].next) ids[k++] = s[i].id;
    *np = k;
    return PEFT_OK;
}

static inline int32_t char_token(const tokenizer *tk, const char *c, int len) {
    if (len == 1) return tk->char_id[(unsigned char)c[0]];
    if (len == 2) {
        uint32_t cp = (uint32_t)(c[0] & 0x1F) << 6 | (c[1] & 0x3F);
        return tk->char_id[cp];
    }
    return tok_strmap_get(&tk->vocab, tk->arena, c, (size_t)len);
}

static int merge_word(const tokenizer *tk, tok_scratch *sc, const char *w, size_t n, tok_ids *out);

int tok_bpe_word(const tokenizer *tk, tok_scratch *sc, const char *w, size_t n, tok_ids *out) {
    if (n == 0) return PEFT_OK;
    if (tk->ignore_merges || tk->whole) {
        int32_t id = tok_strmap_get(&tk->vocab, tk->arena, w, n);
        if (id >= 0 && (tk->ignore_merges || (tk->whole[id >> 3] >> (id & 7) & 1))) return tok_ids_push(out, id);
    }
    return merge_word(tk, sc, w, n, out);
}

int tok_bpe_whole_words(tokenizer *tk) {
    size_t bytes = (size_t)tk->n_ids / 8 + 1;
    uint8_t *whole = calloc(bytes, 1), *fails = calloc(bytes, 1); /* fails: some string of that id doesn't */
    tok_scratch sc;
    int rc = whole && fails ? tok_scratch_init(&sc) : err_set(PEFT_ENOMEM, "tokenizer: cannot allocate the word table");
    if (rc != PEFT_OK) {
        free(whole);
        free(fails);
        return rc;
    }
    tok_ids ids = {0};
    for (size_t i = 0; i < tk->vocab.n && rc == PEFT_OK; i++) {
        const tok_strent *e = &tk->vocab.e[i];
        ids.n = 0;
        rc = merge_word(tk, &sc, tk->arena + e->off, e->len, &ids);
        uint8_t bit = (uint8_t)(1u << (e->id & 7));
        if (ids.n == 1 && ids.v[0] == e->id) whole[e->id >> 3] |= bit;
        else fails[e->id >> 3] |= bit;
    }
    for (size_t i = 0; i < bytes; i++) whole[i] &= (uint8_t)~fails[i];
    free(ids.v);
    free(fails);
    tok_scratch_free(&sc);
    if (rc != PEFT_OK) {
        free(whole);
        return rc;
    }
    tk->whole = whole;
    return PEFT_OK;
}

/* BPE proper: characters to symbols, then merges. */
static int merge_word(const tokenizer *tk, tok_scratch *sc, const char *w, size_t n, tok_ids *out) {
    PEFT_TRY(grow((void **)&sc->word, &sc->word_cap, n, sizeof *sc->word));
    int32_t *ids = sc->word;
    size_t k = 0;
    bool unk_pending = false;
    for (size_t i = 0; i < n;) {
        int len = utf8_len((unsigned char)w[i]);
        int32_t id = char_token(tk, w + i, len);
        if (id >= 0) {
            if (unk_pending) ids[k++] = tk->unk_id;
            unk_pending = false;
            ids[k++] = id;
        } else {
            bool bytes_ok = tk->byte_fallback;
            for (int b = 0; bytes_ok && b < len; b++) bytes_ok = tk->byte_id[(unsigned char)w[i + b]] >= 0;
            if (bytes_ok) {
                /* HF adds the byte tokens before flushing a pending unk; so do we */
                for (int b = 0; b < len; b++) ids[k++] = tk->byte_id[(unsigned char)w[i + b]];
            } else if (tk->unk_id >= 0) {
                if (unk_pending && !tk->fuse_unk) ids[k++] = tk->unk_id;
                unk_pending = true;
            }
        }
        i += (size_t)len;
    }
    if (unk_pending) ids[k++] = tk->unk_id;
    if (k <= TOK_BPE_SMALL) PEFT_TRY(tok_bpe_merge_small(&tk->merges, ids, &k));
    else PEFT_TRY(tok_bpe_merge_heap(&tk->merges, sc, ids, &k));
    return tok_ids_append(out, ids, k);
}
