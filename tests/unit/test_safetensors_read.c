/*
 * test_safetensors_read.c - the safetensors reader (FORMATS.md §1): the dtype table, UTF-8
 * validation, round trips of every dtype it converts, the valid files our writer would not
 * produce, and a table of corrupt files, each of which must fail with the right status and a
 * message naming the file and the fault.
 *
 * The safetensors tests: test_safetensors_read.c (dtypes, UTF-8, round trips, corrupt files),
 * test_safetensors_write.c (the writer), test_safetensors_model.c (model directories).
 */
#include "testutil.h"

#include "error.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dtypes and UTF-8 --------------------------------------------------------------------- */

static void test_dtype_table(void **state) {
    (void)state;
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        st_dtype d;
        assert_int_equal(st_dtype_parse(st_dtype_name((st_dtype)i), &d), PEFT_OK);
        assert_int_equal(d, i);
    }
    st_dtype d;
    assert_int_equal(st_dtype_parse("f32", &d), -1);
    assert_int_equal(st_dtype_parse("", &d), -1);
    assert_int_equal(st_dtype_bits(ST_F4), 4);
    assert_int_equal(st_dtype_bits(ST_F6_E3M2), 6);
    assert_int_equal(st_dtype_bits(ST_BF16), 16);
    assert_int_equal(st_dtype_bits(ST_C64), 64);
    assert_string_equal(st_dtype_name(ST_F8_E4M3FNUZ), "F8_E4M3FNUZ");
}

static void test_utf8(void **state) {
    (void)state;
    static const struct {
        const char *s;
        size_t valid;
    } cases[] = {
        {"abc", 3},
        {"\xc3\xa9", 2},             /* é */
        {"\xf0\x9f\x98\x80", 4},     /* U+1F600 */
        {"\xef\xbf\xbf", 3},         /* U+FFFF */
        {"a\xc3", 1},                /* truncated */
        {"a\xc0\xaf", 1},            /* overlong '/' */
        {"\xe0\x80\xaf", 0},         /* overlong, 3 bytes */
        {"\xed\xa0\x80", 0},         /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 0},     /* U+110000 */
        {"ab\xff", 2},
        {"\x80", 0},                 /* lone continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (st_utf8_valid_len(cases[i].s, strlen(cases[i].s)) != cases[i].valid)
            fail_msg("case %zu: valid prefix %zu, expected %zu", i,
                     st_utf8_valid_len(cases[i].s, strlen(cases[i].s)), cases[i].valid);
}

/* ---- round trips -------------------------------------------------------------------------- */

static void test_round_trip_dtypes(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *path = tu_join(dir, "rt.safetensors");
    const float f32[6] = {1.5f, -2.25f, 0.0f, 3e-39f /* fp32 subnormal */, 1e30f, -7.0f};
    /* 1, -2, 65504 (max), 2^-24 (smallest subnormal), 1023 * 2^-24 (largest subnormal), -0,
     * 2^-14 (smallest normal), +inf, nan */
    const uint16_t f16[9] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x8000, 0x0400, 0x7C00, 0x7E00};
    const float f16_want[7] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f, -0.0f, 0x1p-14f};
    /* 1, -3.5, 3.140625, 2^-133 (a subnormal fp32), -inf: bf16 is the top half of fp32, so exact */
    const uint16_t bf16[5] = {0x3F80, 0xC060, 0x4049, 0x0001, 0xFF80};
    const float bf16_want[4] = {1.0f, -3.5f, 3.140625f, 0x1p-133f};
    const double f64[3] = {0.5, -1e10, 1.0 / 3.0};
    const float f64_want[3] = {0.5f, (float)-1e10, (float)(1.0 / 3.0)};
    const int32_t i32[2] = {7, -9};
    const float scalar = 42.0f;

    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_add(w, "f32", ST_F32, 2, (int64_t[]){2, 3}, f32), PEFT_OK);
    assert_int_equal(st_writer_add(w, "f16", ST_F16, 1, (int64_t[]){9}, f16), PEFT_OK);
    assert_int_equal(st_writer_add(w, "bf16", ST_BF16, 1, (int64_t[]){5}, bf16), PEFT_OK);
    assert_int_equal(st_writer_add(w, "f64", ST_F64, 3, (int64_t[]){1, 3, 1}, f64), PEFT_OK);
    assert_int_equal(st_writer_add(w, "i32", ST_I32, 1, (int64_t[]){2}, i32), PEFT_OK);
    assert_int_equal(st_writer_add(w, "scalar", ST_F32, 0, NULL, &scalar), PEFT_OK);
    assert_int_equal(st_writer_add(w, "empty", ST_F32, 2, (int64_t[]){3, 0}, NULL), PEFT_OK);
    assert_int_equal(st_writer_save(w, path), PEFT_OK);
    st_writer_free(w);

    st_file *f;
    assert_int_equal(st_open(path, &f), PEFT_OK);
    assert_int_equal(st_count(f), 7);
    float out[9];

    const st_tensor *t = st_find(f, "f32");
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->nbytes, 24);
    assert_int_equal(st_read_f32(t, out, 6), PEFT_OK);
    tu_assert_close("f32", out, f32, 6, 0.0);

    t = st_find(f, "f16");
    assert_int_equal(st_read_f32(t, out, 9), PEFT_OK);
    tu_assert_close("f16", out, f16_want, 7, 0.0);
    assert_true(signbit(out[5]));
    assert_true(isinf(out[7]) && out[7] > 0);
    assert_true(isnan(out[8]));

    t = st_find(f, "bf16");
    assert_int_equal(st_read_f32(t, out, 5), PEFT_OK);
    tu_assert_close("bf16", out, bf16_want, 4, 0.0);
    assert_true(isinf(out[4]) && out[4] < 0);

    t = st_find(f, "f64");
    assert_int_equal(t->ndim, 3);
    assert_int_equal(st_read_f32(t, out, 3), PEFT_OK);
    tu_assert_close("f64", out, f64_want, 3, 0.0);

    t = st_find(f, "i32");
    assert_memory_equal(t->data, i32, sizeof i32);
    tu_expect_error(st_read_f32(t, out, 2), PEFT_EUNSUPPORTED, "'i32'", "I32", NULL);

    t = st_find(f, "scalar");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(st_numel(t), 1);
    assert_int_equal(t->nbytes, 4);
    assert_int_equal(st_read_f32(t, out, 1), PEFT_OK);
    tu_assert_close("scalar", out, &scalar, 1, 0.0);
    tu_expect_error(st_read_f32(t, out, 2), PEFT_EMISMATCH, "'scalar'", "1 elements", NULL);

    t = st_find(f, "empty");
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[1], 0);
    assert_int_equal(st_numel(t), 0);
    assert_int_equal(t->nbytes, 0);
    assert_int_equal(st_read_f32(t, NULL, 0), PEFT_OK);

    assert_null(st_find(f, "missing"));
    assert_null(st_at(f, 7));
    /* st_at is in data-offset order: every tensor starts where the previous one ended. */
    for (size_t i = 1; i < st_count(f); i++)
        assert_ptr_equal((const char *)st_at(f, i - 1)->data + st_at(f, i - 1)->nbytes, st_at(f, i)->data);
    st_close(f);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* Files the reference accepts that our writer would not produce: an unpadded header (the
 * reference's own test vector, N = 60), misaligned data, padding other than spaces, null metadata,
 * unknown fields. */
static void test_reader_accepts_valid_variants(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *path = tu_join(dir, "v.safetensors");
    st_file *f;

    tu_write_st_raw(path, "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    assert_int_equal(st_open(path, &f), PEFT_OK);
    assert_int_equal(st_find(f, "test")->nbytes, 16);
    st_close(f);

    /* A U8 first puts the F32 at an odd address: st_read_f32 must not care. */
    const char *hdr = "{\"__metadata__\":null,\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"w\":{\"shape\":[2],\"extra\":1,\"dtype\":\"F32\",\"data_offsets\":[1,9]}} \n\t";
    size_t n = strlen(hdr);
    unsigned char buf[256] = {0};
    assert_true(8 + n + 9 <= sizeof buf);
    buf[0] = (unsigned char)n;
    memcpy(buf + 8, hdr, n);
    const float w[2] = {0.25f, -8.0f};
    memcpy(buf + 8 + n + 1, w, sizeof w);
    tu_write_file(path, buf, 8 + n + 9);
    assert_int_equal(st_open(path, &f), PEFT_OK);
    float out[2];
    assert_int_equal(st_read_f32(st_find(f, "w"), out, 2), PEFT_OK);
    tu_assert_close("unaligned f32", out, w, 2, 0.0);
    assert_null(st_metadata(f, "format"));
    st_close(f);

    /* No tensors, no data. */
    tu_write_st_raw(path, "{}", 0);
    assert_int_equal(st_open(path, &f), PEFT_OK);
    assert_int_equal(st_count(f), 0);
    assert_null(st_find(f, "x"));
    st_close(f);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* ---- corrupt files ------------------------------------------------------------------------ */

#define ST_ENTRY(name, dt, shape, offs) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

typedef struct {
    const char *what;
    const char *raw;  /* written as is when raw_len or !hdr */
    size_t raw_len;
    const char *hdr;  /* else: N, hdr, data_len zero bytes */
    size_t data_len;
    int status;
    const char *phrase1, *phrase2;
} corrupt_case;

static const corrupt_case corrupt_cases[] = {
    {"empty file", "", 0, NULL, 0, PEFT_EFORMAT, "0 bytes", "too short"},
    {"5 bytes", "\x02\0\0\0\0", 5, NULL, 0, PEFT_EFORMAT, "5 bytes", "too short"},
    {"N past end", "\x64\0\0\0\0\0\0\0{}", 10, NULL, 0, PEFT_EFORMAT, "header length 100", "past the end"},
    {"N past end by 1", "\x03\0\0\0\0\0\0\0{}", 10, NULL, 0, PEFT_EFORMAT, "header length 3", "past the end"},
    {"N too large", "\x01\xe1\xf5\x05\0\0\0\0{}", 10, NULL, 0, PEFT_EFORMAT, "100000001", "exceeds the limit"},
    {"N huge", "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, NULL, 0, PEFT_EFORMAT, "exceeds the limit", NULL},
    {"N zero", "\0\0\0\0\0\0\0\0", 8, NULL, 0, PEFT_EFORMAT, "start with '{'", NULL},
    {"not '{'", NULL, 0, "[{}]    ", 0, PEFT_EFORMAT, "start with '{'", NULL},
    {"leading space", NULL, 0, " {}     ", 0, PEFT_EFORMAT, "start with '{'", NULL},
    {"invalid JSON", NULL, 0, "{\"a\":   ", 0, PEFT_EFORMAT, "not valid JSON", NULL},
    {"trailing garbage", NULL, 0, "{} x", 0, PEFT_EFORMAT, "content after", NULL},
    {"two objects", NULL, 0, "{}{}", 0, PEFT_EFORMAT, "content after", NULL},
    {"invalid UTF-8", NULL, 0, "{\"a\xff\":1}", 0, PEFT_EFORMAT, "not valid UTF-8", "header byte 3"},
    {"overlong UTF-8", NULL, 0, "{\"\xc0\xaf\":1}", 0, PEFT_EFORMAT, "not valid UTF-8", NULL},
    {"surrogate UTF-8", NULL, 0, "{\"\xed\xa0\x80\":1}", 0, PEFT_EFORMAT, "not valid UTF-8", NULL},
    {"NUL in header", "\x08\0\0\0\0\0\0\0{}\0     ", 16, NULL, 0, PEFT_EFORMAT, "control character", NULL},
    {"raw newline in name", NULL, 0, "{\"a\nb\":1}", 0, PEFT_EFORMAT, "control character", NULL},
    {"entry not an object", NULL, 0, "{\"a\":1}", 0, PEFT_EFORMAT, "'a'", "expected an object"},
    {"unknown dtype", NULL, 0, "{" ST_ENTRY("w", "F17", "[1]", "[0,4]") "}", 4, PEFT_EFORMAT, "'w'",
     "unknown dtype \"F17\""},
    {"lowercase dtype", NULL, 0, "{" ST_ENTRY("w", "f32", "[1]", "[0,4]") "}", 4, PEFT_EFORMAT, "'w'",
     "unknown dtype \"f32\""},
    {"dtype not a string", NULL, 0, "{\"w\":{\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     PEFT_EFORMAT, "'w'", "dtype must be a string"},
    {"shape/size mismatch", NULL, 0, "{" ST_ENTRY("w", "F32", "[2,2]", "[0,8]") "}", 8, PEFT_EFORMAT, "'w'",
     "needs 16 bytes"},
    {"sub-byte size", NULL, 0, "{" ST_ENTRY("w", "F4", "[3]", "[0,2]") "}", 2, PEFT_EFORMAT, "'w'",
     "whole number of bytes"},
    {"negative dim", NULL, 0, "{" ST_ENTRY("w", "F32", "[-1]", "[0,4]") "}", 4, PEFT_EFORMAT, "'w'",
     "shape[0]"},
    {"fractional dim", NULL, 0, "{" ST_ENTRY("w", "F32", "[1,1.5]", "[0,4]") "}", 4, PEFT_EFORMAT, "'w'",
     "shape[1]"},
    {"string dim", NULL, 0, "{" ST_ENTRY("w", "F32", "[\"1\"]", "[0,4]") "}", 4, PEFT_EFORMAT, "'w'",
     "shape[0]"},
    {"shape not array", NULL, 0, "{" ST_ENTRY("w", "F32", "4", "[0,4]") "}", 4, PEFT_EFORMAT, "'w'",
     "shape must be an array"},
    {"shape overflow", NULL, 0, "{" ST_ENTRY("w", "F32", "[9007199254740992,9007199254740992]", "[0,4]") "}", 4,
     PEFT_EFORMAT, "'w'", "overflows"},
    {"gap", NULL, 0, "{" ST_ENTRY("a", "F32", "[1]", "[0,4]") "," ST_ENTRY("b", "F32", "[1]", "[8,12]") "}", 12,
     PEFT_EFORMAT, "gap of 4 bytes", "'b'"},
    {"overlap", NULL, 0, "{" ST_ENTRY("a", "F32", "[2]", "[0,8]") "," ST_ENTRY("b", "F32", "[2]", "[4,12]") "}",
     12, PEFT_EFORMAT, "'b'", "overlaps tensor 'a'"},
    {"same offsets", NULL, 0, "{" ST_ENTRY("a", "F32", "[1]", "[0,4]") "," ST_ENTRY("b", "F32", "[1]", "[0,4]") "}",
     4, PEFT_EFORMAT, "'b'", "overlaps"},
    {"trailing bytes", NULL, 0, "{" ST_ENTRY("a", "F32", "[1]", "[0,4]") "}", 8, PEFT_EFORMAT,
     "4 trailing bytes", NULL},
    {"data but no tensors", NULL, 0, "{}", 3, PEFT_EFORMAT, "3 trailing bytes", NULL},
    {"truncated data", NULL, 0, "{" ST_ENTRY("a", "F32", "[2]", "[0,8]") "}", 4, PEFT_EFORMAT, "'a'",
     "past the end of the 4-byte data buffer"},
    {"not from 0", NULL, 0, "{" ST_ENTRY("a", "F32", "[1]", "[4,8]") "}", 8, PEFT_EFORMAT, "'a'",
     "must begin at 0"},
    {"negative offset", NULL, 0, "{" ST_ENTRY("a", "F32", "[1]", "[-4,0]") "}", 0, PEFT_EFORMAT, "'a'",
     "data_offsets[0] is not an integer"},
    {"fractional offset", NULL, 0, "{" ST_ENTRY("a", "F32", "[1]", "[0,4.5]") "}", 4, PEFT_EFORMAT, "'a'",
     "data_offsets[1] is not an integer"},
    {"offset past 2^53", NULL, 0, "{" ST_ENTRY("a", "F32", "[1]", "[0,1e300]") "}", 4, PEFT_EFORMAT, "'a'",
     "data_offsets[1] is not an integer"},
    {"reversed offsets", NULL, 0, "{" ST_ENTRY("a", "U8", "[0]", "[4,0]") "}", 4, PEFT_EFORMAT, "'a'",
     "end before"},
    {"offsets length", NULL, 0, "{" ST_ENTRY("a", "U8", "[0]", "[0]") "}", 0, PEFT_EFORMAT, "'a'",
     "data_offsets must be an array"},
    {"duplicate tensor", NULL, 0, "{" ST_ENTRY("a", "F32", "[1]", "[0,4]") "," ST_ENTRY("a", "F32", "[1]", "[4,8]") "}",
     8, PEFT_EFORMAT, "duplicate tensor name 'a'", NULL},
    {"duplicate field", NULL, 0, "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     4, PEFT_EFORMAT, "'a'", "duplicate field \"dtype\""},
    {"missing dtype", NULL, 0, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PEFT_EFORMAT, "'a'",
     "missing field \"dtype\""},
    {"missing shape", NULL, 0, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, PEFT_EFORMAT, "'a'",
     "missing field \"shape\""},
    {"missing data_offsets", NULL, 0, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, PEFT_EFORMAT, "'a'",
     "missing field \"data_offsets\""},
    {"metadata non-string", NULL, 0, "{\"__metadata__\":{\"format\":1}}", 0, PEFT_EFORMAT, "\"format\"",
     "must be a string"},
    {"metadata nested", NULL, 0, "{\"__metadata__\":{\"format\":{\"a\":\"b\"}}}", 0, PEFT_EFORMAT, "\"format\"",
     "must be a string"},
    {"metadata not object", NULL, 0, "{\"__metadata__\":\"pt\"}", 0, PEFT_EFORMAT, "__metadata__",
     "must be an object"},
    {"duplicate metadata key", NULL, 0, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, PEFT_EFORMAT,
     "duplicate __metadata__ key \"k\"", NULL},
    {"two metadata", NULL, 0, "{\"__metadata__\":{},\"__metadata__\":{}}", 0, PEFT_EFORMAT,
     "duplicate key \"__metadata__\"", NULL},
    {"too many dims", NULL, 0, "{" ST_ENTRY("a", "U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1, PEFT_EUNSUPPORTED,
     "'a'", "at most 8"},
};

static void test_corrupt_files(void **state) {
    (void)state;
    char *dir = tu_tmpdir();
    for (size_t i = 0; i < sizeof corrupt_cases / sizeof *corrupt_cases; i++) {
        const corrupt_case *c = &corrupt_cases[i];
        char name[64];
        snprintf(name, sizeof name, "case%02zu.safetensors", i);
        char *path = tu_join(dir, name);
        if (c->hdr) tu_write_st_raw(path, c->hdr, c->data_len);
        else tu_write_file(path, c->raw, c->raw_len);
        st_file *f = (st_file *)1;
        int rc = st_open(path, &f);
        const char *msg = err_msg();
        if (rc != c->status || !strstr(msg, path) || !strstr(msg, c->phrase1) ||
            (c->phrase2 && !strstr(msg, c->phrase2)))
            fail_msg("case %zu (%s): expected %s with [%s] [%s] and the path; got %d (%s): \"%s\"", i, c->what,
                     err_strerror(c->status), c->phrase1, c->phrase2 ? c->phrase2 : "", rc, err_strerror(rc), msg);
        assert_null(f);
        free(path);
    }

    st_file *f;
    char *missing = tu_join(dir, "missing.safetensors");
    tu_expect_error(st_open(missing, &f), PEFT_EIO, missing, "cannot open", NULL);
    assert_null(f);
    tu_expect_error(st_open(dir, &f), PEFT_EIO, dir, "regular file", NULL);
    free(missing);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_round_trip_dtypes),
        cmocka_unit_test(test_reader_accepts_valid_variants),
        cmocka_unit_test(test_corrupt_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
