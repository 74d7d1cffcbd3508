/*
 * utf8.c - UTF-8 validation, decoding and encoding, Rust's lossy conversion, White_Space.
 */
#include "tokenizer_impl.h"

#include <string.h>

#include "error.h"

/* Valid range of the byte after lead byte c (the rest of a sequence is always 80..BF). */
static bool second_ok(unsigned char c, unsigned char b) {
    switch (c) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
    }
}

/* Sequence length announced by a lead byte; 0 for bytes that cannot start one. */
static int lead_width(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Bytes of a valid prefix of the sequence starting at s[0] (a lead byte of width w > 1): the length
 * of the maximal subpart; equals w when the whole sequence is valid. */
static size_t valid_prefix(const unsigned char *s, size_t n, int w) {
    if (n < 2 || !second_ok(s[0], s[1])) return 1;
    size_t k = 2;
    while (k < (size_t)w && k < n && (s[k] & 0xC0) == 0x80) k++;
    return k;
}

size_t utf8_check(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        int w = lead_width(s[i]);
        if (w == 1) {
            i++;
            continue;
        }
        if (w == 0 || valid_prefix(s + i, n - i, w) != (size_t)w) return i;
        i += (size_t)w;
    }
    return n;
}

uint32_t utf8_next(const char *str, int *len) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
    }
    if (c < 0xF0) {
        *len = 3;
        return (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    }
    *len = 4;
    return (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
           (s[3] & 0x3F);
}

int utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_len(unsigned char c) {
    int w = lead_width(c);
    return w ? w : 1;
}

int utf8_append_lossy(tok_buf *out, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0; /* s[run, i) is valid and not yet copied */
    while (i < n) {
        int w = lead_width(s[i]);
        if (w == 1) {
            i++;
            continue;
        }
        size_t k = w ? valid_prefix(s + i, n - i, w) : 1;
        if (w && k == (size_t)w) {
            i += k;
            continue;
        }
        PEFT_TRY(tok_buf_append(out, s + run, i - run));
        PEFT_TRY(tok_buf_append(out, "\xEF\xBF\xBD", 3));
        i += k;
        run = i;
    }
    return tok_buf_append(out, s + run, n - run);
}

bool uni_is_space(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return false;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
