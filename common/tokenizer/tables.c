/*
 * tables.c - growable buffers, the vocabulary and merge hash tables, and the fingerprint hash.
 *
 * Both tables use open addressing with linear probing and stay below 70% load, so a lookup is one
 * multiply and, almost always, one cache line.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return PEFT_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate %zu bytes", cap);
    b->p = p;
    b->cap = cap;
    return PEFT_OK;
}

int tok_buf_append(tok_buf *b, const void *data, size_t n) {
    if (n == 0) return PEFT_OK;
    PEFT_TRY(tok_buf_reserve(b, n));
    memcpy(b->p + b->n, data, n);
    b->n += n;
    return PEFT_OK;
}

static int ids_reserve(tok_ids *ids, size_t extra) {
    if (ids->n + extra <= ids->cap) return PEFT_OK;
    size_t cap = ids->cap ? ids->cap : 64;
    while (cap < ids->n + extra) cap *= 2;
    int32_t *v = realloc(ids->v, cap * sizeof *v);
    if (!v) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate %zu ids", cap);
    ids->v = v;
    ids->cap = cap;
    return PEFT_OK;
}

int tok_ids_push(tok_ids *ids, int32_t id) {
    if (ids->n == ids->cap) PEFT_TRY(ids_reserve(ids, 1));
    ids->v[ids->n++] = id;
    return PEFT_OK;
}

int tok_ids_append(tok_ids *ids, const int32_t *v, size_t n) {
    if (n == 0) return PEFT_OK;
    PEFT_TRY(ids_reserve(ids, n));
    memcpy(ids->v + ids->n, v, n * sizeof *v);
    ids->n += n;
    return PEFT_OK;
}

uint32_t tok_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return (uint32_t)(h >> 32);
}

/* ---- string map ------------------------------------------------------------------------------ */

static int strmap_rehash(tok_strmap *m, size_t slots) {
    uint64_t *s = calloc(slots, sizeof *s);
    if (!s) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate a vocabulary table of %zu slots", slots);
    for (size_t i = 0; m->slots && i <= m->mask; i++) {
        if (!m->slots[i]) continue;
        size_t j = (size_t)(m->slots[i] >> 32) & (slots - 1);
        while (s[j]) j = (j + 1) & (slots - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->mask = slots - 1;
    return PEFT_OK;
}

static int strmap_grow_entries(tok_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    tok_strent *e = realloc(m->e, cap * sizeof *e);
    if (!e) return err_set(PEFT_ENOMEM, "tokenizer: cannot grow the vocabulary to %zu", cap);
    m->e = e;
    m->cap = cap;
    return PEFT_OK;
}

/* Slot holding the string, or the empty slot where it would go. */
static size_t strmap_find(const tok_strmap *m, const char *arena, const char *s, size_t len, uint32_t h) {
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        uint64_t v = m->slots[i];
        if (!v) return i;
        size_t e = (size_t)(uint32_t)v - 1;
        if ((uint32_t)(v >> 32) == h && m->e[e].len == len && memcmp(arena + m->e[e].off, s, len) == 0) return i;
    }
}

int tok_strmap_put(tok_strmap *m, const char *arena, uint32_t off, uint32_t len, int32_t id) {
    if (!m->slots || (m->n + 1) * 10 > (m->mask + 1) * 7)
        PEFT_TRY(strmap_rehash(m, m->slots ? (m->mask + 1) * 2 : 1024));
    uint32_t h = tok_hash_bytes(arena + off, len);
    size_t i = strmap_find(m, arena, arena + off, len, h);
    if (m->slots[i]) {
        m->e[(uint32_t)m->slots[i] - 1].id = id;
        return PEFT_OK;
    }
    if (m->n == m->cap) PEFT_TRY(strmap_grow_entries(m));
    m->e[m->n++] = (tok_strent){off, len, id};
    m->slots[i] = (uint64_t)h << 32 | (uint32_t)m->n;
    return PEFT_OK;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *arena, const char *s, size_t len) {
    if (!m->slots) return -1;
    uint64_t v = m->slots[strmap_find(m, arena, s, len, tok_hash_bytes(s, len))];
    return v ? m->e[(uint32_t)v - 1].id : -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* ---- merge map ------------------------------------------------------------------------------- */

int tok_merges_init(tok_merges *m, size_t expected) {
    size_t slots = 16;
    while (slots * 7 < expected * 10 + 10) slots *= 2;
    m->slots = malloc(slots * sizeof *m->slots);
    if (!m->slots) return err_set(PEFT_ENOMEM, "tokenizer: cannot allocate a merge table of %zu slots", slots);
    for (size_t i = 0; i < slots; i++) m->slots[i].key = TOK_MERGE_EMPTY;
    m->mask = slots - 1;
    m->n = 0;
    return PEFT_OK;
}

void tok_merges_put(tok_merges *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & m->mask;
    while (m->slots[i].key != TOK_MERGE_EMPTY && m->slots[i].key != key) i = (i + 1) & m->mask;
    if (m->slots[i].key == TOK_MERGE_EMPTY) {
        PEFT_ASSERT((m->n + 1) * 10 <= (m->mask + 1) * 7 + 10);
        m->n++;
    }
    m->slots[i] = (tok_merge_slot){key, rank, id};
}

/* ---- fingerprint ----------------------------------------------------------------------------- */

void tok_fp_bytes(tok_fp *f, const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = f->h;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ull;
    f->h = h;
}

void tok_fp_int(tok_fp *f, int64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    tok_fp_bytes(f, b, 8);
}

void tok_fp_str(tok_fp *f, const char *s, size_t n) {
    tok_fp_int(f, (int64_t)n);
    tok_fp_bytes(f, s, n);
}
