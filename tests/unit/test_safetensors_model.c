/*
 * test_safetensors_model.c - a model directory of safetensors files (FORMATS.md §1): a sharded
 * model through model.safetensors.index.json (every lookup goes through the index; each fault of
 * the index or of a shard is named with the file), and a single model.safetensors.
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
    char *p = tu_join(dir, "model.safetensors.index.json");
    tu_write_file(p, json, strlen(json));
    free(p);
}

static void test_sharded_model(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *p1 = tu_join(dir, SHARD1), *p2 = tu_join(dir, SHARD2);
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

    char *idx = tu_join(dir, "model.safetensors.index.json");
    write_index(dir, ",\n    \"d.weight\": \"" SHARD1 "\"");
    tu_expect_error(st_model_open(dir, &m), PEFT_EFORMAT, "'d.weight'", SHARD1, idx);
    assert_null(m);

    write_index(dir, ",\n    \"e.weight\": \"model-00003-of-00003.safetensors\"");
    tu_expect_error(st_model_open(dir, &m), PEFT_EIO, "model-00003-of-00003.safetensors", idx, NULL);

    write_index(dir, ",\n    \"a.weight\": \"" SHARD1 "\"");
    tu_expect_error(st_model_open(dir, &m), PEFT_EFORMAT, "duplicate weight_map entry 'a.weight'", idx, NULL);

    write_index(dir, ",\n    \"e.weight\": \"../" SHARD1 "\"");
    tu_expect_error(st_model_open(dir, &m), PEFT_EFORMAT, "\"e.weight\"", idx, NULL);

    write_index(dir, ",\n    \"e.weight\": 3");
    tu_expect_error(st_model_open(dir, &m), PEFT_EFORMAT, "\"e.weight\"", "shard file name", NULL);

    tu_write_file(idx, "{\"metadata\":{}}", 15);
    tu_expect_error(st_model_open(dir, &m), PEFT_EFORMAT, idx, "weight_map", NULL);

    tu_write_file(idx, "{\"weight_map\":", 14);
    tu_expect_error(st_model_open(dir, &m), PEFT_EFORMAT, idx, "invalid JSON", NULL);

    /* A corrupt shard: the message names the shard, its fault and the index. */
    write_index(dir, "");
    tu_write_st_raw(p2, "{}", 1);
    tu_expect_error(st_model_open(dir, &m), PEFT_EFORMAT, p2, "trailing bytes", idx);

    free(idx);
    tu_rmtree(dir);
    free(p1);
    free(p2);
    free(dir);
}

static void test_single_file_model(void **state) {
    (void)state;
    char *dir = tu_tmpdir(), *p = tu_join(dir, "model.safetensors");
    st_model *m;
    tu_expect_error(st_model_open(dir, &m), PEFT_EIO, dir, "model.safetensors.index.json", "nor model.safetensors");
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

    tu_write_st_raw(p, "{", 0);
    tu_expect_error(st_model_open(dir, &m), PEFT_EFORMAT, p, "not valid JSON", NULL);
    tu_rmtree(dir);
    free(p);
    free(dir);
}
int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sharded_model),
        cmocka_unit_test(test_single_file_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
