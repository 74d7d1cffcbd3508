/*
 * test_golden.c - the base models saved by transformers itself (tests/fixtures/golden, copied from
 * the team's shared golden files): per-position next-token nll and mean loss of each line of
 * inputs.jsonl must match what transformers computed in float64, to 1e-4 relative.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "io/file.h"
#include "model/model.h"
#include "testutil.h"

#define NLL_RTOL 1e-4

static void check_model(const char *name, gemm_backend be) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", tu_fixture_path("golden"), name);
    model *m;
    if (model_load(dir, be, &m) != PEFT_OK) fail_msg("%s", err_msg());
    cJSON *inputs[16], *expected[16];
    int n = tu_read_jsonl(tu_fixture_path("golden/inputs.jsonl"), inputs, 16);
    snprintf(path, sizeof path, "%s/expected.jsonl", dir);
    assert_int_equal(tu_read_jsonl(path, expected, 16), n);
    model_acts *a;
    assert_int_equal(model_acts_init(m, 1, 128, 0, &a), PEFT_OK);
    for (int i = 0; i < n; i++) {
        const cJSON *ids = cJSON_GetObjectItem(inputs[i], "input_ids");
        int T = cJSON_GetArraySize(ids), tokens[128], targets[128];
        assert_true(T > 1 && T <= 128);
        for (int t = 0; t < T; t++) tokens[t] = cJSON_GetArrayItem(ids, t)->valueint;
        for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? tokens[t + 1] : -1;
        model_batch b = {.B = 1, .T = T, .tokens = tokens, .targets = targets};
        double nll;
        int count;
        assert_int_equal(model_forward(m, a, &b, &nll, &count), PEFT_OK);
        const cJSON *want_nll = cJSON_GetObjectItem(expected[i], "nll");
        assert_int_equal(count, cJSON_GetObjectItem(expected[i], "tokens")->valueint);
        assert_int_equal(cJSON_GetArraySize(want_nll), T - 1);
        float got[128], want[128];
        for (int t = 0; t < T - 1; t++) {
            got[t] = model_nll(a)[t];
            want[t] = (float)cJSON_GetArrayItem(want_nll, t)->valuedouble;
        }
        char what[256];
        snprintf(what, sizeof what, "%s [%s] line %d nll", name, gemm_backend_name(be), i + 1);
        tu_assert_close(what, got, want, (size_t)T - 1, NLL_RTOL);
        double want_loss = cJSON_GetObjectItem(expected[i], "loss")->valuedouble;
        if (!(fabs(nll / count - want_loss) <= NLL_RTOL * want_loss))
            fail_msg("%s line %d: loss %.9g want %.9g", name, i + 1, nll / count, want_loss);
    }
    for (int i = 0; i < n; i++) {
        cJSON_Delete(inputs[i]);
        cJSON_Delete(expected[i]);
    }
    model_acts_free(a);
    model_free(m);
}

static void test_gpt2_tiny(void **state) {
    (void)state;
    check_model("gpt2-tiny", GEMM_OPENBLAS);
    check_model("gpt2-tiny", GEMM_ONEDNN);
}

static void test_llama_tiny(void **state) {
    (void)state;
    check_model("llama-tiny", GEMM_OPENBLAS);
    check_model("llama-tiny", GEMM_ONEDNN);
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_tiny),
        cmocka_unit_test(test_llama_tiny),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
