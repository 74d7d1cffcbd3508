/*
 * nfc.c - Unicode Normalization Form C (UAX #15): canonical decomposition, canonical ordering,
 * canonical composition. Tables come from unicode_tables.c; Hangul is done algorithmically.
 *
 * Text below U+0300 is already in NFC (no character there decomposes into anything that would not
 * compose back, and none combines), so a segment whose bytes are all below 0xCC is copied as is.
 */
#include "tokenizer_impl.h"

#include <string.h>

#include "error.h"

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28 };
enum { NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    int lo = 0, hi = uni_ccc_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        uint32_t c = uni_ccc[mid] >> 8;
        if (c == cp) return (int)(uni_ccc[mid] & 0xFF);
        if (c < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

/* Index of cp's decomposition, or -1. */
static int decomp_index(uint32_t cp) {
    if (cp < 0xC0) return -1;
    int lo = 0, hi = uni_decomp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_decomp_cp[mid] == cp) return mid;
        if (uni_decomp_cp[mid] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    int lo = 0, hi = uni_compose_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uint32_t *e = &uni_compose[3 * mid];
        if (e[0] == a && e[1] == b) return e[2];
        if (e[0] < a || (e[0] == a && e[1] < b)) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

static int push_cp(tok_buf *cps, uint32_t cp) {
    PEFT_TRY(tok_buf_reserve(cps, sizeof cp));
    memcpy(cps->p + cps->n, &cp, sizeof cp);
    cps->n += sizeof cp;
    return PEFT_OK;
}

/* Full canonical decomposition of s into cps (uint32 code points). */
static int decompose(const char *s, size_t n, tok_buf *cps) {
    cps->n = 0;
    for (size_t i = 0; i < n;) {
        int len;
        uint32_t cp = utf8_next(s + i, &len);
        i += (size_t)len;
        if (cp >= SBASE && cp < SBASE + SCOUNT) {
            uint32_t si = cp - SBASE;
            PEFT_TRY(push_cp(cps, LBASE + si / NCOUNT));
            PEFT_TRY(push_cp(cps, VBASE + si % NCOUNT / TCOUNT));
            if (si % TCOUNT) PEFT_TRY(push_cp(cps, TBASE + si % TCOUNT));
            continue;
        }
        int d = decomp_index(cp);
        if (d < 0) {
            PEFT_TRY(push_cp(cps, cp));
            continue;
        }
        for (int k = uni_decomp_off[d]; k < uni_decomp_off[d + 1]; k++) PEFT_TRY(push_cp(cps, uni_decomp_pool[k]));
    }
    return PEFT_OK;
}

/* Canonical ordering: a stable sort of each run of non-starters by combining class. */
static void reorder(uint32_t *c, size_t n) {
    for (size_t i = 1; i < n; i++) {
        int ci = ccc(c[i]);
        if (ci == 0) continue;
        size_t j = i;
        uint32_t v = c[i];
        while (j > 0 && ccc(c[j - 1]) > ci) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = v;
    }
}

/* Canonical composition in place; returns the new length. */
static size_t recompose(uint32_t *c, size_t n) {
    if (n == 0) return 0;
    size_t starter = 0, out = 1;
    int last = ccc(c[0]) ? 256 : 0; /* a leading non-starter blocks everything after it */
    for (size_t i = 1; i < n; i++) {
        uint32_t ch = c[i];
        int cl = ccc(ch);
        uint32_t comp = (last < cl || last == 0) ? compose(c[starter], ch) : 0;
        if (comp) {
            c[starter] = comp;
            continue;
        }
        if (cl == 0) starter = out;
        last = cl;
        c[out++] = ch;
    }
    return out;
}

int nfc_append(const char *s, size_t n, tok_buf *out, tok_buf *cps) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0xCC) i++;
    if (i == n) return tok_buf_append(out, s, n);
    PEFT_TRY(decompose(s, n, cps));
    uint32_t *c = (uint32_t *)(void *)cps->p;
    size_t m = cps->n / sizeof *c;
    reorder(c, m);
    m = recompose(c, m);
    PEFT_TRY(tok_buf_reserve(out, 4 * m));
    for (size_t k = 0; k < m; k++) out->n += (size_t)utf8_put(c[k], out->p + out->n);
    return PEFT_OK;
}
