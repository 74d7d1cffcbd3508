/*
 * test_nf4.c - the NF4 codec against scripts/make_quant_fixtures.py (a PyTorch reference of
 * bitsandbytes' quantize_4bit with double quantisation, FORMATS.md section 4).
 *
 * Every case must match bit for bit: packed bytes, first-level absmax (before double
 * quantisation), the mean offset, the 8-bit absmax codes, the nested absmax, the dequantised
 * absmax and the dequantised values (both with the nested absmax and with the plain fp32 absmax).
 * The built-in 16-entry code table and the 256-entry dynamic map must equal the fixture's too.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/safetensors.h"
#include "quant/dynamic_map.h"
#include "quant/nf4.h"

static const st_tensor *get(const st_file *f, const char *cs, const char *what, st_dtype dt) {
    char name[64];
    snprintf(name, sizeof name, "%s%s%s", cs, *cs ? "." : "", what);
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("fixture has no tensor %s", name);
    assert_int_equal(t->dtype, dt);
    return t;
}

/* Bitwise equality of float arrays (so -0 vs 0 and NaN payloads count), printing the first miss. */
static void assert_bits_equal(const char *what, const void *got, const void *want, size_t n, size_t elem) {
    const unsigned char *g = got, *w = want;
    for (size_t i = 0; i < n; i++)
        if (memcmp(g + i * elem, w + i * elem, elem)) {
            if (elem == 4) {
                float a, b;
                memcpy(&a, g + i * elem, 4);
                memcpy(&b, w + i * elem, 4);
                fail_msg("%s: element %zu of %zu differs: got %.9g want %.9g", what, i, n, (double)a, (double)b);
            }
            fail_msg("%s: element %zu of %zu differs: got %u want %u", what, i, n, g[i], w[i]);
        }
}

static void check_case(const st_file *f, const char *cs) {
    char what[96];
    const st_tensor *x = get(f, cs, "x", ST_F32);
    size_t n = (size_t)st_numel(x);
    nf4_tensor t, plain;
    assert_int_equal(nf4_quantize(x->data, n, 64, true, &t), PEFT_OK);
    assert_int_equal(nf4_quantize(x->data, n, 64, false, &plain), PEFT_OK);

    const st_tensor *packed = get(f, cs, "packed", ST_U8);
    assert_int_equal((size_t)st_numel(packed), (n + 1) / 2);
    snprintf(what, sizeof what, "%s packed", cs);
    assert_bits_equal(what, t.packed, packed->data, (n + 1) / 2, 1);
    snprintf(what, sizeof what, "%s packed (no double quantisation)", cs);
    assert_bits_equal(what, plain.packed, packed->data, (n + 1) / 2, 1);

    const st_tensor *absmax = get(f, cs, "absmax", ST_F32);
    assert_int_equal((size_t)st_numel(absmax), t.nblocks);
    snprintf(what, sizeof what, "%s absmax", cs);
    assert_bits_equal(what, plain.absmax, absmax->data, t.nblocks, 4);

    const st_tensor *offset = get(f, cs, "offset", ST_F32);
    snprintf(what, sizeof what, "%s offset (mean absmax)", cs);
    assert_bits_equal(what, &t.offset, offset->data, 1, 4);

    const st_tensor *qabs = get(f, cs, "qabsmax", ST_U8);
    snprintf(what, sizeof what, "%s absmax codes", cs);
    assert_bits_equal(what, t.qabsmax, qabs->data, t.nblocks, 1);

    const st_tensor *nabs = get(f, cs, "nested_absmax", ST_F32);
    assert_int_equal((size_t)st_numel(nabs), t.nnested);
    snprintf(what, sizeof what, "%s nested absmax", cs);
    assert_bits_equal(what, t.nested_absmax, nabs->data, t.nnested, 4);

    float *got = malloc(n * sizeof(float));
    assert_non_null(got);
    float *abs_dq = malloc(t.nblocks * sizeof(float));
    assert_non_null(abs_dq);
    nf4_absmax(&t, 0, t.nblocks, abs_dq);
    snprintf(what, sizeof what, "%s dequantised absmax", cs);
    assert_bits_equal(what, abs_dq, get(f, cs, "absmax_dq", ST_F32)->data, t.nblocks, 4);

    nf4_dequantize(&t, 0, n, got);
    snprintf(what, sizeof what, "%s dequantised", cs);
    assert_bits_equal(what, got, get(f, cs, "dequant", ST_F32)->data, n, 4);
    nf4_dequantize(&plain, 0, n, got);
    snprintf(what, sizeof what, "%s dequantised (fp32 absmax)", cs);
    assert_bits_equal(what, got, get(f, cs, "dequant_plain", ST_F32)->data, n, 4);

    /* Any sub-range (odd starts, block-crossing) dequantises to the same values. */
    const float *want = get(f, cs, "dequant", ST_F32)->data;
    size_t ranges[][2] = {{1, n}, {63, 130 < n ? 130 : n}, {n / 3, n / 3 + 1}, {n - 1, n}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        size_t e0 = ranges[r][0], e1 = ranges[r][1];
        if (e0 >= e1) continue;
        nf4_dequantize(&t, e0, e1, got);
        snprintf(what, sizeof what, "%s dequantised [%zu, %zu)", cs, e0, e1);
        assert_bits_equal(what, got, want + e0, e1 - e0, 4);
    }
    free(abs_dq);
    free(got);
    nf4_free(&t);
    nf4_free(&plain);
}

static void test_tables(void **state) {
    (void)state;
    st_file *f;
    assert_int_equal(st_open(tu_fixture_path("quant/nf4_cases.safetensors"), &f), PEFT_OK);
    assert_bits_equal("nf4 code table", nf4_code, get(f, "", "nf4_code", ST_F32)->data, 16, 4);
    assert_bits_equal("dynamic map", quant_dynamic_map, get(f, "", "dynamic_map", ST_F32)->data, 256, 4);
    st_close(f);
}

static void test_cases(void **state) {
    (void)state;
    st_file *f;
    assert_int_equal(st_open(tu_fixture_path("quant/nf4_cases.safetensors"), &f), PEFT_OK);
    const char *cases[] = {"even", "odd", "big", "ties", "wide"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(f, cases[i]);
    st_close(f);
}

/* Quantising a dequantised tensor again changes nothing (every value is a code times its absmax,
 * and the absmax of each block is attained), and the error of one pass is at most half the
 * widest code gap (0.3038 * absmax / 2 + rounding). */
static void test_error_bound(void **state) {
    (void)state;
    const size_t n = 4096;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *z = malloc(n * sizeof(float));
    assert_true(x && y && z);
    for (size_t i = 0; i < n; i++) x[i] = sinf((float)i * 0.37f) * (1.0f + (float)(i % 7));
    nf4_tensor t, u;
    assert_int_equal(nf4_quantize(x, n, 64, false, &t), PEFT_OK);
    nf4_dequantize(&t, 0, n, y);
    for (size_t i = 0; i < n; i++) {
        float a = t.absmax[i / 64];
        if (fabsf(y[i] - x[i]) > 0.152f * a + 1e-6f) fail_msg("x[%zu] = %g became %g (absmax %g)", i, x[i], y[i], a);
    }
    assert_int_equal(nf4_quantize(y, n, 64, false, &u), PEFT_OK);
    nf4_dequantize(&u, 0, n, z);
    assert_bits_equal("requantised", z, y, n, 4);
    nf4_free(&t);
    nf4_free(&u);
    free(x);
    free(y);
    free(z);
}

static void test_bad_blocksize(void **state) {
    (void)state;
    float x[4] = {0};
    nf4_tensor t;
    assert_int_equal(nf4_quantize(x, 4, 48, true, &t), PEFT_EUSAGE);
    assert_non_null(strstr(err_msg(), "48"));
    nf4_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_error_bound),
        cmocka_unit_test(test_bad_blocksize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
