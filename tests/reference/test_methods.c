/*
 * test_methods.c - every PEFT method against PyTorch (tests/fixtures/methods, written by
 * scripts/make_method_fixtures.py, which implements peft and AdapterHub semantics in float64 and
 * checks itself against the golden files those libraries wrote): the trainable tensors the C code
 * registers must be exactly the fixture's keys and shapes; with the fixture's values loaded, the
 * loss must match to 1e-5 relative and every tensor's gradient to 1e-4 (normwise relative, as
 * tu_assert_close states). Merging lora, dora and ia3 into the weights keeps the loss; the other
 * methods refuse to merge. Both GEMM backends.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "peft/merge.h"
#include "peft/peft.h"
#include "testutil.h"

static const char *cases[] = {
    "gpt2_lora",     "gpt2_lora_layers", "llama_lora",     "llama_rslora",   "gpt2_dora",        "llama_dora",
    "gpt2_ia3",      "llama_ia3",        "gpt2_prompt",    "llama_prompt",   "gpt2_prefix",      "llama_prefix",
    "gpt2_prefix_proj", "llama_prefix_proj", "gpt2_houlsby", "llama_houlsby", "gpt2_pfeiffer",   "llama_pfeiffer",
    "gpt2_parallel", "llama_parallel",   "gpt2_bapna",     "llama_bapna",    "gpt2_io",          "llama_io",
};

static float *read_f32(const st_tensor *t) {
    float *v = malloc((size_t)st_numel(t) * sizeof *v + 4);
    assert_int_equal(st_read_f32(t, v, (size_t)st_numel(t)), PEFT_OK);
    return v;
}

static void run_case(const char *name, gemm_backend be) {
    char dir[1024], path[1200], what[160];
    snprintf(dir, sizeof dir, "%s/%s", tu_fixture_path("methods"), name);
    snprintf(what, sizeof what, "%s [%s]", name, gemm_backend_name(be));
    snprintf(path, sizeof path, "%s/case.json", dir);
    cJSON *c;
    if (json_load_file(path, &c)) fail_msg("%s", err_msg());
    char model_dir[1200], targets[512], layers[512], ff[512];
    snprintf(model_dir, sizeof model_dir, "%s/%s", tu_fixture_path("ref"), cJSON_GetObjectItem(c, "model")->valuestring);
    model *m;
    if (model_load(model_dir, be, &m)) fail_msg("%s", err_msg());
    peft_config pc = tu_case_config(c, targets, layers, ff);
    peft_model *p;
    if (peft_model_create(m, &pc, NULL, &p)) fail_msg("%s: %s", what, err_msg());

    /* the registered tensors are exactly the fixture's */
    st_file *ad, *ex;
    snprintf(path, sizeof path, "%s/adapter.safetensors", dir);
    if (st_open(path, &ad)) fail_msg("%s", err_msg());
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (st_open(path, &ex)) fail_msg("%s", err_msg());
    const tensor_table *t = peft_model_table(p);
    if ((size_t)t->n != st_count(ad)) fail_msg("%s: %d tensors registered, the fixture has %zu", what, t->n, st_count(ad));
    float *params = peft_model_params(p);
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        const st_tensor *st = st_find(ad, e->name);
        if (!st) fail_msg("%s: registered tensor %s is not in the fixture", what, e->name);
        assert_int_equal(st->ndim, e->ndim);
        for (int d = 0; d < e->ndim; d++)
            if (st->shape[d] != e->shape[d]) fail_msg("%s: %s dim %d: %lld vs fixture %lld", what, e->name, d,
                                                      (long long)e->shape[d], (long long)st->shape[d]);
        assert_int_equal(st_read_f32(st, params + e->offset, e->numel), PEFT_OK);
    }

    const st_tensor *ids_t = st_find(ex, "input_ids"), *tg_t = st_find(ex, "targets");
    const int B = (int)ids_t->shape[0], T = (int)ids_t->shape[1], S = (int)tg_t->shape[1], nv = S - T;
    int *ids = malloc(ids_t->nbytes), *tg_ext = malloc(tg_t->nbytes), *targets_real = malloc((size_t)B * T * sizeof(int));
    memcpy(ids, ids_t->data, ids_t->nbytes);
    memcpy(tg_ext, tg_t->data, tg_t->nbytes);
    for (int b = 0; b < B; b++) {
        memcpy(targets_real + (size_t)b * T, tg_ext + (size_t)b * S + nv, (size_t)T * sizeof(int));
        for (int v = 0; v < nv; v++) assert_true(tg_ext[(size_t)b * S + v] < 0); /* our convention for prompts */
    }
    assert_int_equal(peft_model_reserve(p, B, T), PEFT_OK);
    model_acts *a;
    assert_int_equal(model_acts_init(m, B, peft_model_positions(p, T), peft_model_prefix_len(p), &a), PEFT_OK);
    double nll;
    int count;
    peft_model_zero_grad(p);
    if (peft_model_forward(p, a, ids, targets_real, B, T, &nll, &count)) fail_msg("%s: %s", what, err_msg());
    double want;
    memcpy(&want, st_find(ex, "loss_f64")->data, sizeof want);
    if (!(fabs(nll / count - want) <= 1e-5 * fabs(want)))
        fail_msg("%s: loss %.9g, want %.9g (relative error %.2e > 1e-5)", what, nll / count, want,
                 fabs(nll / count - want) / fabs(want));
    peft_model_backward(p, a, 1.0f / (float)count);
    const float *grads = peft_model_grads(p);
    char key[300];
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        snprintf(key, sizeof key, "grad.%s", e->name);
        const st_tensor *gt = st_find(ex, key);
        if (!gt) fail_msg("%s: fixture lacks %s", what, key);
        float *g = read_f32(gt);
        char label[400];
        snprintf(label, sizeof label, "%s: %s", what, key);
        tu_assert_close(label, grads + e->offset, g, e->numel, 1e-4);
        free(g);
    }
    const float *po = peft_model_prefix_output(p);
    const st_tensor *pt = st_find(ex, "prefix_output");
    if (pt) {
        assert_non_null(po);
        float *want_po = read_f32(pt);
        tu_assert_close("prefix MLP output", po, want_po, (size_t)st_numel(pt), 1e-5);
        free(want_po);
    }
    /* merging (export --format merged) gives a plain model with the same loss */
    if (pc.method == PEFT_LORA || pc.method == PEFT_DORA || pc.method == PEFT_IA3) {
        assert_int_equal(peft_model_merge(p), PEFT_OK);
        model_batch b = {.B = B, .T = T, .tokens = ids, .targets = targets_real};
        double merged;
        int mc;
        assert_int_equal(model_forward(m, a, &b, &merged, &mc), PEFT_OK);
        assert_int_equal(mc, count);
        if (!(fabs(merged / mc - want) <= 1e-5 * fabs(want)))
            fail_msg("%s: merged loss %.9g, want %.9g", what, merged / mc, want);
    } else {
        assert_int_equal(peft_model_merge(p), PEFT_EUNSUPPORTED);
    }
    free(ids);
    free(tg_ext);
    free(targets_real);
    model_acts_free(a);
    st_close(ad);
    st_close(ex);
    peft_model_free(p);
    model_free(m);
    cJSON_Delete(c);
}

static void test_methods_openblas(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i], GEMM_OPENBLAS);
}

static void test_methods_onednn(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i], GEMM_ONEDNN);
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods_openblas),
        cmocka_unit_test(test_methods_onednn),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
