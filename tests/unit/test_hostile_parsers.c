/*
 * test_hostile_parsers.c - regression tests for what the fuzz targets (tests/fuzz/) found in the
 * parsers, through the same memory-buffer entry points: each case is an input that once crashed
 * under UBSan or was accepted wrongly, and must now give PEFT_EFORMAT / PEFT_EUNSUPPORTED with a
 * message naming the key (or a wire message the receiver must reject); plus the defaults a
 * hand-written method config must keep.
 */
#include "testutil.h"

#include "data/dataset_impl.h"
#include "error.h"
#include "io/json.h"
#include "model/config.h"
#include "peft/peft_config_json.h"
#include "wire.h"

#include <string.h>

static int peft_from_text(const char *text, peft_config *c) {
    cJSON *root;
    assert_int_equal(json_parse_buffer("test.json", text, strlen(text), &root), PEFT_OK);
    int rc = peft_config_from_json(root, "test.json", c);
    cJSON_Delete(root);
    return rc;
}

/* absent keys keep peft_config_defaults' values (lora_alpha, reduction_factor and the seed were
 * zeroed before) */
static void test_peft_config_defaults(void **state) {
    (void)state;
    peft_config c, want;
    assert_int_equal(peft_from_text("{\"method\": \"lora\"}", &c), PEFT_OK);
    peft_config_defaults(&want, PEFT_LORA);
    assert_true(c.lora_alpha == want.lora_alpha);
    assert_true(c.lora_dropout == want.lora_dropout);
    assert_true(c.reduction_factor == want.reduction_factor);
    assert_true(c.seed == want.seed);
    assert_int_equal(c.r, want.r);
}

static void test_peft_config_out_of_range(void **state) {
    (void)state;
    peft_config c;
    /* a negative or fractional seed was a float-to-integer conversion out of range (UB) */
    assert_int_equal(peft_from_text("{\"method\": \"lora\", \"peft_seed\": -2}", &c), PEFT_EFORMAT);
    assert_non_null(strstr(err_msg(), "peft_seed"));
    assert_int_equal(peft_from_text("{\"method\": \"lora\", \"peft_seed\": 1e30}", &c), PEFT_EFORMAT);
    /* a double past FLT_MAX became an infinite scaling */
    assert_int_equal(peft_from_text("{\"method\": \"lora\", \"lora_alpha\": 4.21e101}", &c), PEFT_EFORMAT);
    assert_non_null(strstr(err_msg(), "lora_alpha"));
    assert_int_equal(peft_from_text("{\"method\": \"lora\", \"peft_seed\": 7}", &c), PEFT_OK);
    assert_true(c.seed == 7);
}

/* 4 * n_embd overflowed int before the sizes were bounded */
static void test_config_sizes_bounded(void **state) {
    (void)state;
    const char *text = "{\"model_type\": \"gpt2\", \"n_embd\": 833333333, \"n_head\": 1, \"n_layer\": 2, "
                       "\"n_positions\": 8, \"vocab_size\": 16}";
    cJSON *root;
    assert_int_equal(json_parse_buffer("config.json", text, strlen(text), &root), PEFT_OK);
    model_config c;
    assert_int_equal(config_from_json(root, "config.json", &c), PEFT_EUNSUPPORTED);
    assert_non_null(strstr(err_msg(), "hidden size 833333333 is over the supported maximum"));
    cJSON_Delete(root);
}

/* a manifest count past 2^64 was a float-to-integer conversion out of range (UB) */
static void test_manifest_count_range(void **state) {
    (void)state;
    const char *text = "{\"format\": \"peft-dataset\", \"version\": 1, \"seq_len\": 8, \"seed\": 42, "
                       "\"train\": {\"documents\": 1, \"sequences\": 1, \"tokens\": 8, \"loss_tokens\": 1e49, "
                       "\"files\": [{\"sequences\": 1}]}, "
                       "\"val\": {\"documents\": 0, \"sequences\": 0, \"tokens\": 0, \"loss_tokens\": 0, "
                       "\"files\": [{\"sequences\": 0}]}}";
    dataset_info info;
    assert_int_equal(dataset_manifest_parse("manifest.json", text, strlen(text), &info), PEFT_EFORMAT);
    assert_non_null(strstr(err_msg(), "'loss_tokens' must be a non-negative integer"));
}

/* a push computed on version INT64_MIN: `version - p->version` overflowed (UB), and in practice
 * wrapped to a negative lag, so the stale push was accepted as fresh */
static void test_wire_push_version_extreme(void **state) {
    (void)state;
    Peft__Wire__Push push = PEFT__WIRE__PUSH__INIT;
    push.version = INT64_MIN;
    push.offset = 16;
    push.count = 2;
    wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
    env.body_case = PEFT__WIRE__ENVELOPE__BODY_PUSH;
    env.push = &push;
    const float grad[2] = {1.0f, 2.0f};
    wire_buf b = {0};
    assert_int_equal(wire_encode(&env, grad, 2, &b), PEFT_OK);
    wire_msg m;
    assert_int_equal(wire_decode(b.data, b.len, "rank 3", &m), PEFT_OK);
    assert_int_equal(wire_check_push(&m, "rank 3", 16, 2, 5, 2), PEFT_EFORMAT);
    assert_non_null(strstr(err_msg(), "stale"));
    push.version = 4; /* one behind, within the allowed lag: accepted */
    wire_msg_free(&m);
    assert_int_equal(wire_encode(&env, grad, 2, &b), PEFT_OK);
    assert_int_equal(wire_decode(b.data, b.len, "rank 3", &m), PEFT_OK);
    assert_int_equal(wire_check_push(&m, "rank 3", 16, 2, 5, 2), PEFT_OK);
    wire_msg_free(&m);
    wire_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peft_config_defaults),
        cmocka_unit_test(test_peft_config_out_of_range),
        cmocka_unit_test(test_config_sizes_bounded),
        cmocka_unit_test(test_manifest_count_range),
        cmocka_unit_test(test_wire_push_version_extreme),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
