/*
 * test_model_reference.c - the forward and backward pass against PyTorch (tests/fixtures/ref,
 * written by scripts/make_fixtures.py in float64): logits, loss, the gradient of every weight, of
 * the input embeddings, and of the prompt-tuning and prefix-tuning extension points, for every
 * case and both GEMM backends.
 * Tolerance: normwise relative 1e-4 for tensors (max|got-want| / max(1, max|want|)), 1e-5
 * relative for the loss.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "testutil.h"

#define TENSOR_RTOL 1e-4
#define LOSS_RTOL 1e-5

static const char *cases[] = {"gpt2",     "gpt2_prompt",      "gpt2_prefix", "llama_gqa",          "llama_prompt",
                              "llama_prefix", "llama_tied_rope3", "qwen2_bias",  "llama_attn_mlp_bias"};

static const st_tensor *need(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: fixture tensor '%s' missing", st_path(f), name);
    return t;
}

static float *read_f32(const st_tensor *t) {
    size_t n = (size_t)st_numel(t);
    float *v = malloc(n * sizeof *v + 1);
    assert_non_null(v);
    assert_int_equal(st_read_f32(t, v, n), PEFT_OK);
    return v;
}

static int *read_i32(const st_tensor *t) {
    assert_int_equal(t->dtype, ST_I32);
    int *v = malloc(t->nbytes + 1);
    assert_non_null(v);
    memcpy(v, t->data, t->nbytes);
    return v;
}

static void check_tensor(const st_file *ex, const char *key, const float *got, size_t n, const char *what) {
    const st_tensor *t = need(ex, key);
    assert_int_equal((size_t)st_numel(t), n);
    float *want = read_f32(t);
    char label[256];
    snprintf(label, sizeof label, "%s: %s", what, key);
    tu_assert_close(label, got, want, n, TENSOR_RTOL);
    free(want);
}

static void run_case(const char *name, gemm_backend be) {
    char dir[1024], path[1200], what[128];
    snprintf(dir, sizeof dir, "%s", tu_fixture_path("ref"));
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", name);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    snprintf(what, sizeof what, "%s [%s]", name, gemm_backend_name(be));

    model *m;
    if (model_load(dir, be, &m) != PEFT_OK) fail_msg("model_load(%s): %s", dir, err_msg());
    st_file *ex;
    if (st_open(path, &ex) != PEFT_OK) fail_msg("%s", err_msg());
    assert_int_equal(model_set_trainable(m, NULL, NULL), PEFT_OK);

    const st_tensor *ids_t = need(ex, "input_ids");
    const int B = (int)ids_t->shape[0], T = (int)ids_t->shape[1];
    const int nv = atoi(st_metadata(ex, "n_virtual")), np = atoi(st_metadata(ex, "n_prefix"));
    const model_config *c = &m->cfg;
    const size_t S = (size_t)nv + T, C = c->hidden_size, V = c->vocab_size;
    const size_t prefix_n = (size_t)np * c->num_layers * 2 * c->num_kv_heads * c->head_dim;

    int *ids = read_i32(ids_t), *targets = read_i32(need(ex, "targets"));
    float *virt = nv ? read_f32(need(ex, "virtual_embeds")) : NULL;
    float *prefix = np ? read_f32(need(ex, "prefix")) : NULL;
    float *dvirt = nv ? calloc((size_t)nv * C, sizeof(float)) : NULL;
    float *dprefix = np ? calloc(prefix_n, sizeof(float)) : NULL;

    model_acts *a;
    assert_int_equal(model_acts_init(m, B, (int)S, np, &a), PEFT_OK);
    model_batch b = {.B = B, .T = T, .tokens = ids, .targets = targets, .virtual_embeds = virt, .n_virtual = nv,
                     .prefix = prefix, .n_prefix = np};
    double nll;
    int count;
    assert_int_equal(model_forward(m, a, &b, &nll, &count), PEFT_OK);
    check_tensor(ex, "logits", model_logits(a), (size_t)B * S * V, what);

    double want_loss;
    const st_tensor *lt = need(ex, "loss_f64");
    memcpy(&want_loss, lt->data, sizeof want_loss);
    double loss = nll / count;
    if (!(fabs(loss - want_loss) <= LOSS_RTOL * fabs(want_loss)))
        fail_msg("%s: loss %.9g, want %.9g (relative error %.2e > %.0e)", what, loss, want_loss,
                 fabs(loss - want_loss) / fabs(want_loss), LOSS_RTOL);

    model_zero_grad(m);
    model_backward(m, a, &b, 1.0f / (float)count, dvirt, dprefix);

    /* the real tokens' rows of d loss / d input embeddings */
    float *dembed = malloc((size_t)B * T * C * sizeof(float));
    for (int s = 0; s < B; s++)
        memcpy(dembed + (size_t)s * T * C, model_dembed(a) + ((size_t)s * S + nv) * C, (size_t)T * C * sizeof(float));
    check_tensor(ex, "grad.inputs_embeds", dembed, (size_t)B * T * C, what);
    if (nv) check_tensor(ex, "grad.virtual_embeds", dvirt, (size_t)nv * C, what);
    if (np) check_tensor(ex, "grad.prefix", dprefix, prefix_n, what);
    char key[200];
    for (int i = 0; i < m->nparams; i++) {
        snprintf(key, sizeof key, "grad.%s", m->params[i].name);
        check_tensor(ex, key, m->params[i].grad, m->params[i].numel, what);
    }

    free(dembed);
    free(ids);
    free(targets);
    free(virt);
    free(prefix);
    free(dvirt);
    free(dprefix);
    model_acts_free(a);
    st_close(ex);
    model_free(m);
}

static void test_all_cases_openblas(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i], GEMM_OPENBLAS);
}

static void test_all_cases_onednn(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i], GEMM_ONEDNN);
}

/* Only the real tokens' gradients flow when nothing is trainable: no weight gradient exists, and
 * the input-embedding gradient is the same as with everything trainable. */
static void test_frozen_model_still_has_input_gradients(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/llama_gqa", tu_fixture_path("ref"));
    model *m;
    assert_int_equal(model_load(dir, GEMM_OPENBLAS, &m), PEFT_OK);
    assert_int_equal(model_set_trainable(m, NULL, NULL), PEFT_OK);
    bool none(const param *p, void *ctx);
    assert_int_equal(model_set_trainable(m, none, NULL), PEFT_OK);
    assert_null(m->grads);
    for (int i = 0; i < m->nparams; i++) assert_null(m->params[i].grad);
    char path[1200];
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    st_file *ex;
    assert_int_equal(st_open(path, &ex), PEFT_OK);
    const st_tensor *ids_t = need(ex, "input_ids");
    const int B = (int)ids_t->shape[0], T = (int)ids_t->shape[1];
    int *ids = read_i32(ids_t), *targets = read_i32(need(ex, "targets"));
    model_acts *a;
    assert_int_equal(model_acts_init(m, B, T, 0, &a), PEFT_OK);
    model_batch b = {.B = B, .T = T, .tokens = ids, .targets = targets};
    double nll;
    int count;
    assert_int_equal(model_forward(m, a, &b, &nll, &count), PEFT_OK);
    model_backward(m, a, &b, 1.0f / (float)count, NULL, NULL);
    check_tensor(ex, "grad.inputs_embeds", model_dembed(a), (size_t)B * T * m->cfg.hidden_size, "frozen llama_gqa");
    free(ids);
    free(targets);
    model_acts_free(a);
    st_close(ex);
    model_free(m);
}

bool none(const param *p, void *ctx) {
    (void)p;
    (void)ctx;
    return false;
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_cases_openblas),
        cmocka_unit_test(test_all_cases_onednn),
        cmocka_unit_test(test_frozen_model_still_has_input_gradients),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
