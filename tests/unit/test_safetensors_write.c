/*
 * test_safetensors_write.c - the safetensors writer (FORMATS.md §1): byte for byte against the
 * worked example of FORMATS.md §1.6, the order of the tensors and the escaping of their names, the
 * metadata, usage errors, and that a failed save never leaves a partial file.
 *
 * The safetensors tests: test_safetensors_read.c (dtypes, UTF-8, round trips, corrupt files),
 * test_safetensors_write.c (the writer), test_safetensors_model.c (model directories).
 */
#include "testutil.h"

#include "error.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- writer ------------------------------------------------------------------------------- */

static void test_worked_example(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *path = tu_join(dir, "adapter_model.safetensors");
    float a[8], b[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (float)i + 0.5f;
        b[i] = -(float)i;
    }
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    /* Added in the "wrong" order: the writer must sort. */
    assert_int_equal(st_writer_add(w, "x.lora_B.weight", ST_F32, 2, (int64_t[]){4, 2}, b), PEFT_OK);
    assert_int_equal(st_writer_add(w, "x.lora_A.weight", ST_F32, 2, (int64_t[]){2, 4}, a), PEFT_OK);
    assert_int_equal(st_writer_set_metadata(w, "format", "pt"), PEFT_OK);
    assert_int_equal(st_writer_save(w, path), PEFT_OK);
    st_writer_free(w);

    static const char want_hdr[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"x.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,32]},"
        "\"x.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[32,64]}}   ";
    assert_int_equal(sizeof want_hdr - 1, 176);
    size_t len;
    unsigned char *got = (unsigned char *)tu_read_file(path, &len);
    assert_int_equal(len, 248);
    static const unsigned char want_len[8] = {0xb0, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(got, want_len, 8);
    if (memcmp(got + 8, want_hdr, 176) != 0)
        fail_msg("header differs:\n got: %.176s\nwant: %s", (const char *)got + 8, want_hdr);
    assert_memory_equal(got + 184, a, 32);
    assert_memory_equal(got + 216, b, 32);
    free(got);
    char *tmp = tu_join(dir, "adapter_model.safetensors.tmp");
    assert_false(path_exists(tmp));
    free(tmp);

    st_file *f;
    assert_int_equal(st_open(path, &f), PEFT_OK);
    assert_int_equal(st_count(f), 2);
    assert_string_equal(st_at(f, 0)->name, "x.lora_A.weight");
    assert_string_equal(st_path(f), path);
    st_close(f);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* Descending dtype enum (alignment) order, then by name; escaped names; an empty writer. */
static void test_writer_order_and_escapes(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *path = tu_join(dir, "o.safetensors");
    unsigned char bytes[64] = {0};
    static const struct {
        const char *name;
        st_dtype dtype;
    } adds[] = {{"b", ST_BOOL}, {"z", ST_F64}, {"c", ST_F16}, {"a", ST_I64}, {"f", ST_U8},
                {"e", ST_F32},  {"d", ST_BF16}, {"g", ST_F32}};
    const char *odd = "q\"u\\o\nt\x01\xc3\xa9";
    const char *want[] = {"a", "z", "e", "g", "d", "c", "f", odd, "b"};
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(st_writer_add(w, adds[i].name, adds[i].dtype, 1, (int64_t[]){1}, bytes), PEFT_OK);
    assert_int_equal(st_writer_add(w, odd, ST_U8, 1, (int64_t[]){1}, bytes), PEFT_OK);
    assert_int_equal(st_writer_save(w, path), PEFT_OK);
    st_writer_free(w);

    size_t len;
    unsigned char *got = (unsigned char *)tu_read_file(path, &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | got[i];
    assert_int_equal(n % 8, 0);
    assert_int_equal(len, 8 + n + 8 + 8 + 4 + 4 + 2 + 2 + 1 + 1 + 1);
    const char *escaped = "\"q\\\"u\\\\o\\nt\\u0001\xc3\xa9\":";
    if (!memmem(got + 8, n, escaped, strlen(escaped)))
        fail_msg("escaped name not found in header: %.*s", (int)n, (const char *)got + 8);
    free(got);

    st_file *f;
    assert_int_equal(st_open(path, &f), PEFT_OK);
    assert_int_equal(st_count(f), 9);
    for (size_t i = 0; i < 9; i++) assert_string_equal(st_at(f, i)->name, want[i]);
    assert_non_null(st_find(f, odd));
    assert_null(st_metadata(f, "format"));
    st_close(f);

    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_save(w, path), PEFT_OK);
    st_writer_free(w);
    got = (unsigned char *)tu_read_file(path, &len);
    assert_int_equal(len, 16);
    assert_memory_equal(got, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(got);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void test_writer_usage_errors(void **state) {
    (void)state;
    float x[4] = {0};
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_add(w, "a", ST_F32, 1, (int64_t[]){4}, x), PEFT_OK);
    tu_expect_error(st_writer_add(w, "a", ST_F16, 1, (int64_t[]){2}, x), PEFT_EUSAGE, "duplicate", "'a'", NULL);
    tu_expect_error(st_writer_add(w, "b", ST_F32, 1, (int64_t[]){-1}, x), PEFT_EUSAGE, "'b'", "shape[0]", NULL);
    tu_expect_error(st_writer_add(w, "c", ST_F4, 1, (int64_t[]){3}, x), PEFT_EUSAGE, "'c'", "whole number", NULL);
    tu_expect_error(st_writer_add(w, "d", (st_dtype)99, 1, (int64_t[]){1}, x), PEFT_EUSAGE, "'d'", "dtype", NULL);
    tu_expect_error(st_writer_add(w, "e", ST_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x), PEFT_EUSAGE, "'e'",
                    "dimensions", NULL);
    tu_expect_error(st_writer_add(w, "__metadata__", ST_F32, 0, NULL, x), PEFT_EUSAGE, "__metadata__", NULL, NULL);
    tu_expect_error(st_writer_add(w, "bad\xff", ST_F32, 0, NULL, x), PEFT_EUSAGE, "UTF-8", NULL, NULL);
    tu_expect_error(st_writer_add(w, "f", ST_F32, 1, (int64_t[]){1}, NULL), PEFT_EUSAGE, "'f'", "NULL", NULL);
    tu_expect_error(st_writer_set_metadata(w, "k", "\xc0\xaf"), PEFT_EUSAGE, "'k'", "UTF-8", NULL);
    assert_int_equal(st_writer_add(w, "empty", ST_F32, 2, (int64_t[]){0, 5}, NULL), PEFT_OK);
    st_writer_free(w);
    st_writer_free(NULL);
    st_close(NULL);
    st_model_close(NULL);
}

/* A failed save creates nothing and leaves an existing file intact. */
static void test_writer_never_leaves_partial_file(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *missing = tu_join(dir, "nope"), *bad = tu_join(missing, "x.safetensors");
    float x[2] = {1, 2};
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_add(w, "x", ST_F32, 1, (int64_t[]){2}, x), PEFT_OK);
    tu_expect_error(st_writer_save(w, bad), PEFT_EIO, bad, NULL, NULL);
    assert_false(path_exists(missing));

    /* path.tmp is a directory, so the temporary file cannot be created: the old file survives. */
    char *path = tu_join(dir, "keep.safetensors"), *tmp = tu_join(dir, "keep.safetensors.tmp");
    tu_write_file(path, "old contents", 12);
    assert_int_equal(mkdir(tmp, 0755), 0);
    tu_expect_error(st_writer_save(w, path), PEFT_EIO, path, NULL, NULL);
    size_t len;
    unsigned char *got = (unsigned char *)tu_read_file(path, &len);
    assert_int_equal(len, 12);
    assert_memory_equal(got, "old contents", 12);
    free(got);
    assert_true(path_exists(tmp));

    /* The rename fails (path is a directory) after the data was written: the temporary goes too. */
    char *sub = tu_join(dir, "sub"), *subtmp = tu_join(dir, "sub.tmp");
    assert_int_equal(mkdir(sub, 0755), 0);
    tu_expect_error(st_writer_save(w, sub), PEFT_EIO, sub, NULL, NULL);
    assert_false(path_exists(subtmp));
    assert_true(path_exists(sub));
    free(sub);
    free(subtmp);

    /* And once it can be written, it replaces the old file. */
    assert_int_equal(rmdir(tmp), 0);
    assert_int_equal(st_writer_save(w, path), PEFT_OK);
    assert_false(path_exists(tmp));
    st_file *f;
    assert_int_equal(st_open(path, &f), PEFT_OK);
    assert_int_equal(st_count(f), 1);
    st_close(f);
    st_writer_free(w);
    tu_rmtree(dir);
    free(path);
    free(tmp);
    free(bad);
    free(missing);
    free(dir);
}

static void test_metadata(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *path = tu_join(dir, "m.safetensors");
    float x = 1.0f;
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_set_metadata(w, "format", "tf"), PEFT_OK);
    assert_int_equal(st_writer_set_metadata(w, "note", "line1\nline2 \"q\" \xc3\xa9"), PEFT_OK);
    assert_int_equal(st_writer_set_metadata(w, "format", "pt"), PEFT_OK); /* replaces */
    assert_int_equal(st_writer_set_metadata(w, "empty", ""), PEFT_OK);
    assert_int_equal(st_writer_add(w, "x", ST_F32, 0, NULL, &x), PEFT_OK);
    assert_int_equal(st_writer_save(w, path), PEFT_OK);
    st_writer_free(w);

    size_t len;
    unsigned char *got = (unsigned char *)tu_read_file(path, &len);
    const char *want_start = "{\"__metadata__\":{\"empty\":\"\",\"format\":\"pt\",\"note\":\"line1\\nline2 \\\"q\\\" \xc3\xa9\"},";
    if (memcmp(got + 8, want_start, strlen(want_start)) != 0)
        fail_msg("header starts with %.*s\nexpected %s", (int)strlen(want_start), (const char *)got + 8, want_start);
    free(got);

    st_file *f;
    assert_int_equal(st_open(path, &f), PEFT_OK);
    assert_string_equal(st_metadata(f, "format"), "pt");
    assert_string_equal(st_metadata(f, "note"), "line1\nline2 \"q\" \xc3\xa9");
    assert_string_equal(st_metadata(f, "empty"), "");
    assert_null(st_metadata(f, "missing"));
    assert_null(st_metadata(f, "x"));
    st_close(f);
    tu_rmtree(dir);
    free(path);
    free(dir);
}
int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_writer_order_and_escapes),
        cmocka_unit_test(test_writer_usage_errors),
        cmocka_unit_test(test_writer_never_leaves_partial_file),
        cmocka_unit_test(test_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
