/*
 * test_tokenizer_unicode.c - the tokenizer's Unicode helpers (common/tokenizer/): UTF-8 validation
 * and lossy repair (one U+FFFD per maximal subpart, as Rust's from_utf8_lossy), and NFC on UAX
 * #15's tricky cases (and on Unicode's whole NormalizationTest.txt when PEFT_NFC_TEST names it).
 */
#include "testutil.h"

#include "error.h"
#include "tokenizer/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_utf8(void **state) {
    (void)state;
    static const struct {
        const char *s;
        size_t bad;
    } cases[] = {
        {"plain", 5},          {"ab\xFF", 2},           {"\xC0\x80", 0},          {"x\xED\xA0\x80", 1},
        {"\xE2\x82", 0},       {"\xF4\x90\x80\x80", 0}, {"\xF0\x9F\x98\x80!", 5}, {"\xC3\xA9\x80", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (utf8_check(cases[i].s, strlen(cases[i].s)) != cases[i].bad)
            fail_msg("utf8_check case %zu: got %zu, want %zu", i, utf8_check(cases[i].s, strlen(cases[i].s)),
                     cases[i].bad);
    /* one U+FFFD per maximal subpart: the cut F0 9F 98 is one, the stray 80 after C3 80 another */
    tok_buf b = {0};
    assert_int_equal(utf8_append_lossy(&b, "a\xF0\x9F\x98" "b\xC3\x80\x80", 8), PEFT_OK);
    assert_int_equal(b.n, 10);
    assert_memory_equal(b.p, "a\xEF\xBF\xBD" "b\xC3\x80\xEF\xBF\xBD", 10);
    free(b.p);
}

/* ---- NFC ------------------------------------------------------------------------------------- */

static void expect_nfc(const char *in, const char *want) {
    tok_buf out = {0}, cps = {0};
    assert_int_equal(nfc_append(in, strlen(in), &out, &cps), PEFT_OK);
    if (out.n != strlen(want) || memcmp(out.p, want, out.n) != 0)
        fail_msg("NFC(\"%s\"): got \"%.*s\" (%zu bytes), want \"%s\"", in, (int)out.n, out.p ? out.p : "", out.n, want);
    free(out.p);
    free(cps.p);
}

/* Runs Unicode's NormalizationTest.txt when PEFT_NFC_TEST names it: c2 == NFC(c1..c3), c4 == NFC(c4, c5). */
static void nfc_conformance(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("PEFT_NFC_TEST=%s: cannot open", path);
    char line[4096];
    int checked = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '@' || line[0] == '\n') continue;
        char col[5][256];
        char *p = line;
        for (int c = 0; c < 5; c++) {
            size_t n = 0;
            while (*p && *p != ';') {
                char *end;
                unsigned long cp = strtoul(p, &end, 16);
                if (end == p) {
                    p++;
                    continue;
                }
                n += (size_t)utf8_put((uint32_t)cp, col[c] + n);
                p = end;
            }
            col[c][n] = '\0';
            if (*p == ';') p++;
        }
        for (int c = 0; c < 3; c++) expect_nfc(col[c], col[1]);
        for (int c = 3; c < 5; c++) expect_nfc(col[c], col[3]);
        checked++;
    }
    fclose(f);
    printf("NFC conformance: %d lines of %s\n", checked, path);
}

static void test_nfc(void **state) {
    (void)state;
    expect_nfc("plain ASCII and Latin-1: \xC3\xA9t\xC3\xA9", "plain ASCII and Latin-1: \xC3\xA9t\xC3\xA9");
    expect_nfc("e\xCC\x81", "\xC3\xA9");                                  /* e + acute */
    expect_nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81");     /* Hangul L V T */
    expect_nfc("\xEA\xB0\x80\xE1\x86\xA8", "\xEA\xB0\x81");                 /* Hangul LV + T */
    expect_nfc("a\xCC\xA3\xCC\x82", "\xE1\xBA\xAD");                        /* a + dot below + circumflex */
    expect_nfc("a\xCC\x82\xCC\xA3", "\xE1\xBA\xAD");                        /* reordered */
    expect_nfc("\xE2\x84\xAB", "\xC3\x85");                                 /* Angstrom sign: singleton */
    expect_nfc("\xCD\x84", "\xCC\x88\xCC\x81");                             /* non-starter decomposition */
    expect_nfc("\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC");                 /* excluded: Devanagari qa */
    expect_nfc("\xE1\xB8\x8B\xCC\xA3", "\xE1\xB8\x8D\xCC\x87");             /* d dot above + dot below */
    expect_nfc("\xCC\x81" "e", "\xCC\x81" "e");                             /* leading combining mark */
    expect_nfc("a\xCC\x81\xCC\x81", "\xC3\xA1\xCC\x81");                    /* second acute is blocked */
    expect_nfc("\xEF\xAC\x81", "\xEF\xAC\x81");                             /* compatibility only: kept */
    const char *full = getenv("PEFT_NFC_TEST");
    if (full) nfc_conformance(full);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_nfc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
