/*
 * test_tokenizer.c - Hugging Face BPE tokenizers (common/tokenizer/) against Hugging Face's own
 * Rust library.
 *
 * tests/fixtures/tokenizers/expected/ holds, for six tokenizers (GPT-2's real vocabulary and five
 * small ones in the styles of Llama 3, Qwen2, Llama 2, Mistral and a made-up one covering the
 * remaining features) and two texts, the ids with and without special tokens and the decoded text
 * of every line; every line must match exactly. Also: their special ids, GPT-2's vocab.json +
 * merges.txt, every GPT-2 token's round trip, sharing one tokenizer between threads, and a
 * throughput note (printed, never asserted).
 *
 * Each stage on hand-made tokenizer.json strings: test_tokenizer_stages.c; UTF-8 and NFC:
 * test_tokenizer_unicode.c; errors: test_tokenizer_errors.c.
 */
#include "testutil.h"
#include "tu_tokenizer.h"

#include "error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* ---- fixtures: HF's own outputs -------------------------------------------------------------- */

static const char *const FIXTURE_TOKENIZERS[] = {"gpt2",          "llama3_style",        "qwen2_style",
                                                 "llama2_style",  "mistral_style",       "metaspace_unk_style"};
static const char *const FIXTURE_TEXTS[] = {"multilingual", "fortunes"};

/* The lines of a text file (its final newline dropped), pointing into *buf. */
static size_t split_lines(char *buf, size_t len, char ***lines) {
    size_t n = 0, cap = 64;
    *lines = malloc(cap * sizeof **lines);
    if (len && buf[len - 1] == '\n') buf[--len] = '\0';
    for (char *p = buf, *end = buf + len;; n++) {
        if (n == cap) *lines = realloc(*lines, (cap *= 2) * sizeof **lines);
        (*lines)[n] = p;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            n++;
            break;
        }
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

static size_t json_ids(const cJSON *arr, int32_t *out, size_t cap) {
    size_t n = 0;
    for (const cJSON *v = arr ? arr->child : NULL; v && n < cap; v = v->next) out[n++] = (int32_t)v->valuedouble;
    return n;
}

/* Compares every line of one tokenizer on one text; returns the number of matching lines. */
static int compare_fixture(const tokenizer *tk, const char *name, const char *text, bool check_special) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/text/%s.txt", text);
    size_t tlen, elen;
    char *tbuf = tu_read_file(tu_fixture_path(rel), &tlen), **lines, **exp;
    snprintf(rel, sizeof rel, "tokenizers/expected/%s.%s.jsonl", name, text);
    char *ebuf = tu_read_file(tu_fixture_path(rel), &elen);
    size_t n = split_lines(tbuf, tlen, &lines), ne = split_lines(ebuf, elen, &exp);
    if (n != ne) fail_msg("%s: %zu lines but %zu expected rows", rel, n, ne);
    int matched = 0, reported = 0;
    static int32_t want[1 << 16], want_sp[1 << 16];
    for (size_t i = 0; i < n; i++) {
        cJSON *row = cJSON_Parse(exp[i]);
        if (!row) fail_msg("%s: row %zu is not JSON", rel, i + 1);
        size_t nw = json_ids(cJSON_GetObjectItem(row, "ids"), want, 1 << 16);
        size_t nws = json_ids(cJSON_GetObjectItem(row, "ids_special"), want_sp, 1 << 16);
        const char *dec_want = cJSON_GetStringValue(cJSON_GetObjectItem(row, "decoded"));
        tok_ids got = {0}, got_sp = {0};
        size_t len = strlen(lines[i]);
        if (tokenizer_encode(tk, lines[i], len, false, &got) || tokenizer_encode(tk, lines[i], len, true, &got_sp))
            fail_msg("%s line %zu: encode failed: %s", name, i + 1, err_msg());
        char *dec = NULL;
        if (tokenizer_decode(tk, got.v, got.n, false, &dec, NULL))
            fail_msg("%s line %zu: decode failed: %s", name, i + 1, err_msg());
        bool ok_ids = tu_same_ids(got.v, got.n, want, nw);
        bool ok_sp = !check_special || tu_same_ids(got_sp.v, got_sp.n, want_sp, nws);
        bool ok_dec = dec_want && !strcmp(dec, dec_want);
        if (ok_ids && ok_sp && ok_dec) matched++;
        else if (reported++ == 0) {
            static char g[1 << 16], w[1 << 16];
            const tok_ids *bad = ok_ids ? &got_sp : &got;
            tu_ids_str(bad->v, bad->n, g, sizeof g);
            tu_ids_str(ok_ids ? want_sp : want, ok_ids ? nws : nw, w, sizeof w);
            print_error("%s/%s line %zu: \"%s\"\n  %s got  [%s]\n  %s want [%s]\n  decoded got  \"%s\"\n"
                        "  decoded want \"%s\"\n",
                        name, text, i + 1, lines[i], ok_ids ? "ids_special" : "ids", g, ok_ids ? "ids_special" : "ids",
                        w, dec, dec_want ? dec_want : "(missing)");
        }
        free(dec);
        free(got.v);
        free(got_sp.v);
        cJSON_Delete(row);
    }
    printf("  %-20s %-13s %3d/%zu lines match (ids, ids_special, decoded)\n", name, text, matched, n);
    free(lines);
    free(exp);
    free(tbuf);
    free(ebuf);
    return matched == (int)n ? 0 : 1;
}

static tokenizer *load_fixture(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/%s", name);
    tokenizer *tk = NULL;
    if (tokenizer_load(tu_fixture_path(rel), &tk)) fail_msg("%s: %s", rel, err_msg());
    return tk;
}

static void test_fixtures(void **state) {
    (void)state;
    int failures = 0;
    for (size_t t = 0; t < sizeof FIXTURE_TOKENIZERS / sizeof *FIXTURE_TOKENIZERS; t++) {
        tokenizer *tk = load_fixture(FIXTURE_TOKENIZERS[t]);
        for (int x = 0; x < 2; x++) failures += compare_fixture(tk, FIXTURE_TOKENIZERS[t], FIXTURE_TEXTS[x], true);
        tokenizer_free(tk);
    }
    if (failures)
        fail_msg("%d tokenizer/text pairs differ from Hugging Face (first difference printed above)", failures);
}

static void test_fixture_special_ids(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int bos, eos;
    } want[] = {{"gpt2", 50256, 50256}, {"llama3_style", 3004, 3005}, {"qwen2_style", -1, 3004},
                {"llama2_style", 1, 2}, {"mistral_style", 1, 2},      {"metaspace_unk_style", 1, 2}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        tokenizer *tk = load_fixture(want[i].name);
        if (tokenizer_bos_id(tk) != want[i].bos || tokenizer_eos_id(tk) != want[i].eos)
            fail_msg("%s: bos/eos %d/%d, want %d/%d", want[i].name, tokenizer_bos_id(tk), tokenizer_eos_id(tk),
                     want[i].bos, want[i].eos);
        tokenizer_free(tk);
    }
}

/* GPT-2's vocab.json + merges.txt: the same ids as its tokenizer.json, and the same fingerprint. */
static void test_gpt2_vocab_merges(void **state) {
    (void)state;
    char dir[4200], src[4200], dst[4200], rel[64];
    snprintf(dir, sizeof dir, "%s/gpt2-files", tu_tok_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    for (int i = 0; i < 2; i++) {
        const char *f = i ? "merges.txt" : "vocab.json";
        snprintf(rel, sizeof rel, "tokenizers/gpt2/%s", f);
        snprintf(src, sizeof src, "%s", tu_fixture_path(rel));
        char *abs = realpath(src, NULL);
        if (!abs) fail_msg("%s: missing", src);
        snprintf(dst, sizeof dst, "%s/%s", dir, f);
        assert_int_equal(symlink(abs, dst), 0);
        free(abs);
    }
    tokenizer *files = NULL, *json = load_fixture("gpt2");
    if (tokenizer_load(dir, &files)) fail_msg("%s: %s", dir, err_msg());
    assert_int_equal(tokenizer_vocab_size(files), 50257);
    assert_int_equal(tokenizer_eos_id(files), 50256);
    assert_int_equal(tokenizer_bos_id(files), -1);
    assert_string_equal(tokenizer_fingerprint(files), tokenizer_fingerprint(json));
    int failures = 0;
    for (int x = 0; x < 2; x++) failures += compare_fixture(files, "gpt2", FIXTURE_TEXTS[x], true);
    if (failures) fail_msg("vocab.json + merges.txt differ from Hugging Face");
    tokenizer_free(files);
    tokenizer_free(json);
}

/* Every plain GPT-2 token whose bytes are valid UTF-8 decodes to text that encodes back to exactly
 * that token, and decodes again to the same text. */
static void test_gpt2_vocab_round_trip(void **state) {
    (void)state;
    tokenizer *tk = load_fixture("gpt2");
    int exact = 0, invalid = 0, n = tokenizer_vocab_size(tk);
    for (int32_t id = 0; id < n; id++) {
        if (tk->id_special[id]) continue;
        char *s = NULL, *back = NULL;
        size_t len, blen;
        assert_int_equal(tokenizer_decode(tk, &id, 1, false, &s, &len), PEFT_OK);
        const char *tok = tokenizer_id_to_token(tk, id);
        bool lossy = strstr(s, "\xEF\xBF\xBD") && !strstr(tok, "\xC3\xAF\xC2\xBF\xC2\xBD");
        if (lossy) { /* a token holding part of a UTF-8 sequence */
            invalid++;
            free(s);
            continue;
        }
        tok_ids ids = {0};
        if (tokenizer_encode(tk, s, len, false, &ids)) fail_msg("id %d: encode failed: %s", id, err_msg());
        exact += ids.n == 1 && ids.v[0] == id;
        assert_int_equal(tokenizer_decode(tk, ids.v, ids.n, false, &back, &blen), PEFT_OK);
        if (blen != len || memcmp(back, s, len)) fail_msg("id %d (%s): \"%s\" came back as \"%s\"", id, tok, s, back);
        free(ids.v);
        free(back);
        free(s);
    }
    printf("  GPT-2 vocabulary: %d tokens, %d encode back to themselves alone, %d hold partial UTF-8\n", n, exact,
           invalid);
    /* 50257 = 1 special + partial-UTF-8 tokens + the rest, all of which BPE reaches on its own */
    if (exact != n - 1 - invalid)
        fail_msg("only %d of %d GPT-2 tokens encode back to themselves", exact, n - 1 - invalid);
    tokenizer_free(tk);
}

/* ---- threads ---------------------------------------------------------------------------------- */

typedef struct {
    const tokenizer *tk;
    char **lines;
    size_t n;
    tok_ids *want;
    int mismatches;
} thread_job;

static void *encode_all(void *arg) {
    thread_job *job = arg;
    for (int rep = 0; rep < 5; rep++)
        for (size_t i = 0; i < job->n; i++) {
            tok_ids ids = {0};
            if (tokenizer_encode(job->tk, job->lines[i], strlen(job->lines[i]), true, &ids) ||
                !tu_same_ids(ids.v, ids.n, job->want[i].v, job->want[i].n))
                job->mismatches++;
            free(ids.v);
        }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    for (size_t t = 0; t < sizeof FIXTURE_TOKENIZERS / sizeof *FIXTURE_TOKENIZERS; t++) {
        tokenizer *tk = load_fixture(FIXTURE_TOKENIZERS[t]);
        size_t len;
        char *buf = tu_read_file(tu_fixture_path("tokenizers/text/multilingual.txt"), &len), **lines;
        size_t n = split_lines(buf, len, &lines);
        tok_ids *want = calloc(n, sizeof *want);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(tokenizer_encode(tk, lines[i], strlen(lines[i]), true, &want[i]), PEFT_OK);
        pthread_t th[4];
        thread_job jobs[4];
        for (int k = 0; k < 4; k++) {
            jobs[k] = (thread_job){tk, lines, n, want, 0};
            assert_int_equal(pthread_create(&th[k], NULL, encode_all, &jobs[k]), 0);
        }
        for (int k = 0; k < 4; k++) {
            pthread_join(th[k], NULL);
            if (jobs[k].mismatches) fail_msg("%s: thread %d saw %d different encodings", FIXTURE_TOKENIZERS[t], k,
                                             jobs[k].mismatches);
        }
        for (size_t i = 0; i < n; i++) free(want[i].v);
        free(want);
        free(lines);
        free(buf);
        tokenizer_free(tk);
    }
}

/* Throughput, printed only (no timing assertions): GPT-2 on fortunes.txt line by line. */
static void test_throughput_note(void **state) {
    (void)state;
    tokenizer *tk = load_fixture("gpt2");
    size_t len;
    char *buf = tu_read_file(tu_fixture_path("tokenizers/text/fortunes.txt"), &len), **lines;
    size_t n = split_lines(buf, len, &lines), bytes = 0, count = 0;
    tok_ids ids = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int rep = 0; rep < 100; rep++)
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(lines[i]);
            ids.n = 0;
            assert_int_equal(tokenizer_encode(tk, lines[i], l, false, &ids), PEFT_OK);
            bytes += l;
            count += ids.n;
        }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    printf("  throughput: GPT-2, fortunes.txt x100 line by line: %.1f MB in %.3f s = %.1f MB/s, %zu tokens\n",
           (double)bytes / 1e6, s, (double)bytes / 1e6 / s, count);
    free(ids.v);
    free(lines);
    free(buf);
    tokenizer_free(tk);
}
int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_fixture_special_ids),
        cmocka_unit_test(test_gpt2_vocab_merges),
        cmocka_unit_test(test_gpt2_vocab_round_trip),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_throughput_note),
    };
    return cmocka_run_group_tests(tests, tu_tok_setup, tu_tok_teardown);
}
