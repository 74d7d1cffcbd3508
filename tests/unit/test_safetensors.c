/*
 * test_safetensors.c - the safetensors reader, writer and model-directory loader (FORMATS.md §1).
 *
 * The writer is checked byte for byte against the worked example of FORMATS.md §1.6; the reader
 * against round trips and against a table of corrupt files, each of which must fail with the
 * right status and a message naming the file and the fault.
 */
#include "testutil.h"

#include "error.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* A file with the given header (its length as N) followed by data_len zero bytes. */
static void write_st(const char *path, const char *hdr, size_t data_len) {
    size_t n = strlen(hdr), total = 8 + n + data_len;
    unsigned char *buf = calloc(1, total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, hdr, n);
    tu_write_file(path, buf, total);
    free(buf);
}

/* Fails unless rc == want and the last message contains every non-NULL phrase. */
static void expect_error(int rc, int want, const char *p1, const char *p2, const char *p3) {
    const char *msg = err_msg();
    if (rc != want || (p1 && !strstr(msg, p1)) || (p2 && !strstr(msg, p2)) || (p3 && !strstr(msg, p3)))
        fail_msg("expected status %d (%s) and a message containing [%s] [%s] [%s]; got %d (%s): \"%s\"", want,
                 err_strerror(want), p1 ? p1 : "", p2 ? p2 : "", p3 ? p3 : "", rc, err_strerror(rc), msg);
}

static int path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

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

/* ---- writer ------------------------------------------------------------------------------- */

static void test_worked_example(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *path = join(dir, "adapter_model.safetensors");
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
    unsigned char *got = read_all(path, &len);
    assert_int_equal(len, 248);
    static const unsigned char want_len[8] = {0xb0, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(got, want_len, 8);
    if (memcmp(got + 8, want_hdr, 176) != 0)
        fail_msg("header differs:\n got: %.176s\nwant: %s", (const char *)got + 8, want_hdr);
    assert_memory_equal(got + 184, a, 32);
    assert_memory_equal(got + 216, b, 32);
    free(got);
    char *tmp = join(dir, "adapter_model.safetensors.tmp");
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
    char *dir = tu_tmpdir(), *path = join(dir, "o.safetensors");
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
    unsigned char *got = read_all(path, &len);
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
    got = read_all(path, &len);
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
    expect_error(st_writer_add(w, "a", ST_F16, 1, (int64_t[]){2}, x), PEFT_EUSAGE, "duplicate", "'a'", NULL);
    expect_error(st_writer_add(w, "b", ST_F32, 1, (int64_t[]){-1}, x), PEFT_EUSAGE, "'b'", "shape[0]", NULL);
    expect_error(st_writer_add(w, "c", ST_F4, 1, (int64_t[]){3}, x), PEFT_EUSAGE, "'c'", "whole number", NULL);
    expect_error(st_writer_add(w, "d", (st_dtype)99, 1, (int64_t[]){1}, x), PEFT_EUSAGE, "'d'", "dtype", NULL);
    expect_error(st_writer_add(w, "e", ST_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x), PEFT_EUSAGE, "'e'",
                 "dimensions", NULL);
    expect_error(st_writer_add(w, "__metadata__", ST_F32, 0, NULL, x), PEFT_EUSAGE, "__metadata__", NULL, NULL);
    expect_error(st_writer_add(w, "bad\xff", ST_F32, 0, NULL, x), PEFT_EUSAGE, "UTF-8", NULL, NULL);
    expect_error(st_writer_add(w, "f", ST_F32, 1, (int64_t[]){1}, NULL), PEFT_EUSAGE, "'f'", "NULL", NULL);
    expect_error(st_writer_set_metadata(w, "k", "\xc0\xaf"), PEFT_EUSAGE, "'k'", "UTF-8", NULL);
    assert_int_equal(st_writer_add(w, "empty", ST_F32, 2, (int64_t[]){0, 5}, NULL), PEFT_OK);
    st_writer_free(w);
    st_writer_free(NULL);
    st_close(NULL);
    st_model_close(NULL);
}

/* A failed save creates nothing and leaves an existing file intact. */
static void test_writer_never_leaves_partial_file(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *missing = join(dir, "nope"), *bad = join(missing, "x.safetensors");
    float x[2] = {1, 2};
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_add(w, "x", ST_F32, 1, (int64_t[]){2}, x), PEFT_OK);
    expect_error(st_writer_save(w, bad), PEFT_EIO, bad, NULL, NULL);
    assert_false(path_exists(missing));

    /* path.tmp is a directory, so the temporary file cannot be created: the old file survives. */
    char *path = join(dir, "keep.safetensors"), *tmp = join(dir, "keep.safetensors.tmp");
    tu_write_file(path, "old contents", 12);
    assert_int_equal(mkdir(tmp, 0755), 0);
    expect_error(st_writer_save(w, path), PEFT_EIO, path, NULL, NULL);
    size_t len;
    unsigned char *got = read_all(path, &len);
    assert_int_equal(len, 12);
    assert_memory_equal(got, "old contents", 12);
    free(got);
    assert_true(path_exists(tmp));

    /* The rename fails (path is a directory) after the data was written: the temporary goes too. */
    char *sub = join(dir, "sub"), *subtmp = join(dir, "sub.tmp");
    assert_int_equal(mkdir(sub, 0755), 0);
    expect_error(st_writer_save(w, sub), PEFT_EIO, sub, NULL, NULL);
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

/* ---- round trips -------------------------------------------------------------------------- */

static void test_round_trip_dtypes(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *path = join(dir, "rt.safetensors");
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
    expect_error(st_read_f32(t, out, 2), PEFT_EUNSUPPORTED, "'i32'", "I32", NULL);

    t = st_find(f, "scalar");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(st_numel(t), 1);
    assert_int_equal(t->nbytes, 4);
    assert_int_equal(st_read_f32(t, out, 1), PEFT_OK);
    tu_assert_close("scalar", out, &scalar, 1, 0.0);
    expect_error(st_read_f32(t, out, 2), PEFT_EMISMATCH, "'scalar'", "1 elements", NULL);

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
    char *dir = tu_tmpdir(), *path = join(dir, "v.safetensors");
    st_file *f;

    write_st(path, "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
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
    write_st(path, "{}", 0);
    assert_int_equal(st_open(path, &f), PEFT_OK);
    assert_int_equal(st_count(f), 0);
    assert_null(st_find(f, "x"));
    st_close(f);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void test_metadata(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *path = join(dir, "m.safetensors");
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
    unsigned char *got = read_all(path, &len);
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
        char *path = join(dir, name);
        if (c->hdr) write_st(path, c->hdr, c->data_len);
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
    char *missing = join(dir, "missing.safetensors");
    expect_error(st_open(missing, &f), PEFT_EIO, missing, "cannot open", NULL);
    assert_null(f);
    expect_error(st_open(dir, &f), PEFT_EIO, dir, "regular file", NULL);
    free(missing);
    tu_rmtree(dir);
    free(dir);
}

/* ---- model directories -------------------------------------------------------------------- */

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

static void write_index(const char *dir, const char *extra_entries) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\n  \"metadata\": {\n    \"total_size\": 22\n  },\n  \"weight_map\": {\n"
             "    \"a.weight\": \"" SHARD1 "\",\n    \"c.weight\": \"" SHARD2 "\",\n"
             "    \"b.weight\": \"" SHARD1 "\"%s\n  }\n}\n",
             extra_entries);
    char *p = join(dir, "model.safetensors.index.json");
    tu_write_file(p, json, strlen(json));
    free(p);
}

static void test_sharded_model(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *p1 = join(dir, SHARD1), *p2 = join(dir, SHARD2);
    const float a[2] = {1, 2}, c[3] = {3, 4, 5};
    const uint16_t b = 0x3800; /* 0.5 in F16 */
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_add(w, "a.weight", ST_F32, 1, (int64_t[]){2}, a), PEFT_OK);
    assert_int_equal(st_writer_add(w, "b.weight", ST_F16, 1, (int64_t[]){1}, &b), PEFT_OK);
    assert_int_equal(st_writer_add(w, "unlisted", ST_F16, 1, (int64_t[]){1}, &b), PEFT_OK);
    assert_int_equal(st_writer_save(w, p1), PEFT_OK);
    st_writer_free(w);
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_add(w, "c.weight", ST_F32, 1, (int64_t[]){3}, c), PEFT_OK);
    assert_int_equal(st_writer_save(w, p2), PEFT_OK);
    st_writer_free(w);
    write_index(dir, "");

    st_model *m;
    assert_int_equal(st_model_open(dir, &m), PEFT_OK);
    assert_int_equal(st_model_count(m), 3); /* lookups go through the index: "unlisted" is not there */
    assert_string_equal(st_model_at(m, 0)->name, "a.weight");
    assert_string_equal(st_model_at(m, 1)->name, "b.weight");
    assert_string_equal(st_model_at(m, 2)->name, "c.weight");
    assert_null(st_model_at(m, 3));
    assert_null(st_model_find(m, "unlisted"));
    assert_null(st_model_find(m, "nope"));
    float out[3];
    const st_tensor *t = st_model_find(m, "a.weight");
    assert_non_null(t);
    assert_string_equal(st_model_file_of(m, t), p1);
    assert_int_equal(st_read_f32(t, out, 2), PEFT_OK);
    tu_assert_close("a.weight", out, a, 2, 0.0);
    t = st_model_find(m, "b.weight");
    assert_string_equal(st_model_file_of(m, t), p1);
    assert_int_equal(st_read_f32(t, out, 1), PEFT_OK);
    tu_assert_close("b.weight", out, (const float[]){0.5f}, 1, 0.0);
    t = st_model_find(m, "c.weight");
    assert_string_equal(st_model_file_of(m, t), p2);
    assert_int_equal(st_read_f32(t, out, 3), PEFT_OK);
    tu_assert_close("c.weight", out, c, 3, 0.0);
    assert_null(st_model_file_of(m, &(st_tensor){0}));
    st_model_close(m);

    char *idx = join(dir, "model.safetensors.index.json");
    write_index(dir, ",\n    \"d.weight\": \"" SHARD1 "\"");
    expect_error(st_model_open(dir, &m), PEFT_EFORMAT, "'d.weight'", SHARD1, idx);
    assert_null(m);

    write_index(dir, ",\n    \"e.weight\": \"model-00003-of-00003.safetensors\"");
    expect_error(st_model_open(dir, &m), PEFT_EIO, "model-00003-of-00003.safetensors", idx, NULL);

    write_index(dir, ",\n    \"a.weight\": \"" SHARD1 "\"");
    expect_error(st_model_open(dir, &m), PEFT_EFORMAT, "duplicate weight_map entry 'a.weight'", idx, NULL);

    write_index(dir, ",\n    \"e.weight\": \"../" SHARD1 "\"");
    expect_error(st_model_open(dir, &m), PEFT_EFORMAT, "\"e.weight\"", idx, NULL);

    write_index(dir, ",\n    \"e.weight\": 3");
    expect_error(st_model_open(dir, &m), PEFT_EFORMAT, "\"e.weight\"", "shard file name", NULL);

    tu_write_file(idx, "{\"metadata\":{}}", 15);
    expect_error(st_model_open(dir, &m), PEFT_EFORMAT, idx, "weight_map", NULL);

    tu_write_file(idx, "{\"weight_map\":", 14);
    expect_error(st_model_open(dir, &m), PEFT_EFORMAT, idx, "invalid JSON", NULL);

    /* A corrupt shard: the message names the shard, its fault and the index. */
    write_index(dir, "");
    write_st(p2, "{}", 1);
    expect_error(st_model_open(dir, &m), PEFT_EFORMAT, p2, "trailing bytes", idx);

    free(idx);
    tu_rmtree(dir);
    free(p1);
    free(p2);
    free(dir);
}

static void test_single_file_model(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *p = join(dir, "model.safetensors");
    st_model *m;
    expect_error(st_model_open(dir, &m), PEFT_EIO, dir, "model.safetensors.index.json", "nor model.safetensors");
    assert_null(m);

    const float x[2] = {9, 8};
    st_writer *w;
    assert_int_equal(st_writer_init(&w), PEFT_OK);
    assert_int_equal(st_writer_add(w, "y", ST_F32, 1, (int64_t[]){2}, x), PEFT_OK);
    assert_int_equal(st_writer_add(w, "x", ST_F32, 1, (int64_t[]){2}, x), PEFT_OK);
    assert_int_equal(st_writer_save(w, p), PEFT_OK);
    st_writer_free(w);
    assert_int_equal(st_model_open(dir, &m), PEFT_OK);
    assert_int_equal(st_model_count(m), 2);
    assert_string_equal(st_model_at(m, 0)->name, "x");
    const st_tensor *t = st_model_find(m, "y");
    assert_non_null(t);
    assert_string_equal(st_model_file_of(m, t), p);
    st_model_close(m);

    write_st(p, "{", 0);
    expect_error(st_model_open(dir, &m), PEFT_EFORMAT, p, "not valid JSON", NULL);
    tu_rmtree(dir);
    free(p);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_writer_order_and_escapes),
        cmocka_unit_test(test_writer_usage_errors),
        cmocka_unit_test(test_writer_never_leaves_partial_file),
        cmocka_unit_test(test_round_trip_dtypes),
        cmocka_unit_test(test_reader_accepts_valid_variants),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_sharded_model),
        cmocka_unit_test(test_single_file_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
