/*
 * test_gradcheck_model.c - central finite-difference checks of the whole model's backward pass
 * (GPT-2 and Llama: tied and untied heads, q/k/v biases, llama3 RoPE) through its weights,
 * embeddings and the PEFT extension points (virtual embeddings, prefix keys/values), on its mean
 * loss at a random sample of every parameter, every virtual-embedding entry and a sample of the
 * prefix; that a second backward adds the same gradients; and the fused output head against the
 * plain one.
 *
 * The model is tu_model.h's tiny one (vocab 37, hidden 16, 2 layers, weights re-drawn at std 0.2).
 * Method and tolerance as test_gradcheck.c (tu_gradcheck.h): max|analytic - numeric| <= rtol *
 * max|numeric| over one tensor; a numeric gradient that vanishes fails.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "model/acts.h"
#include "model/model.h"
#include "rng.h"
#include "testutil.h"
#include "tu_gradcheck.h"
#include "tu_model.h"

/* The whole model: a loss of ~4 through ~20 fp32 kernels. A smaller step loses the gradient in
 * fp32 noise, a larger one in truncation error (Llama's embeddings, seen through the first
 * RMSNorm, are the most curved direction: 9e-3 at eps 1e-2). The worst error seen over 30 random
 * seeds in brackets. */
#define MODEL_EPS 5e-3f
#define MODEL_RTOL 1e-2 /* [2.2e-3] */
/* Accumulating into a buffer that holds values rounds once more (or, for in-place sums, in a
 * different order): a few ulps of the larger operand. */
#define ACCUM_RTOL 1e-6

static rng_state rng;

enum { MB = 2, MT = 6, NV = 2, NP = 2, TT = NV + MT, MC = TU_TINY_HIDDEN, SAMPLES = 10 };

typedef struct {
    model *m;
    model_acts *a;
    model_batch b;
    int tokens[MB * MT], targets[MB * TT];
    float *virt, *prefix;
    size_t nprefix;
} model_case;

static double model_loss(void *ctx) {
    model_case *c = ctx;
    double nll;
    int count;
    assert_int_equal(model_forward(c->m, c->a, &c->b, &nll, &count), PEFT_OK);
    return nll / count;
}

static bool train_nothing(const param *p, void *ctx) { return false; }

/* tu_model.h's tiny model (llama: the head tied or not, q/k/v biases or not, a RoPE scaling). */
static void model_case_init(model_case *c, model_arch arch, bool tied, rope_scaling_type scaling, bool qkv_bias) {
    model_config cfg;
    tu_tiny_config(arch, &cfg);
    if (arch == ARCH_LLAMA) {
        cfg.tie_word_embeddings = tied, cfg.qkv_bias = qkv_bias;
        cfg.rope_scaling = scaling, cfg.rope_factor = 8, cfg.rope_low_freq_factor = 1, cfg.rope_high_freq_factor = 4;
        cfg.rope_original_max_positions = 16;
    }
    memset(c, 0, sizeof *c);
    c->m = tu_tiny_model(&cfg, 42, &rng);
    assert_int_equal(model_set_trainable(c->m, NULL, NULL), PEFT_OK);
    assert_int_equal(model_acts_init(c->m, MB, TT, NP, &c->a), PEFT_OK);
    for (int i = 0; i < MB * MT; i++) c->tokens[i] = (int)rng_below(&rng, TU_TINY_VOCAB);
    c->tokens[MT + 2] = c->tokens[1]; /* a token occurring twice: its wte row sums two rows' gradients */
    for (int i = 0; i < MB * TT; i++) c->targets[i] = (int)rng_below(&rng, TU_TINY_VOCAB);
    c->targets[0] = c->targets[TT + 1] = c->targets[5] = c->targets[2 * TT - 1] = -100;
    const int KVhd = cfg.num_kv_heads * cfg.head_dim;
    c->nprefix = (size_t)NP * cfg.num_layers * 2 * KVhd;
    c->virt = tu_randn(&rng, (size_t)NV * cfg.hidden_size, 0.0f, 0.5f);
    c->prefix = tu_randn(&rng, c->nprefix, 0.0f, 1.0f);
    c->b = (model_batch){.B = MB, .T = MT, .tokens = c->tokens, .targets = c->targets, .virtual_embeds = c->virt,
                         .n_virtual = NV, .prefix = c->prefix, .n_prefix = NP};
}

static void model_case_free(model_case *c) {
    model_acts_free(c->a);
    model_free(c->m);
    free(c->virt), free(c->prefix);
}

/* Entries to probe in a parameter: random ones, except that wte favours rows of tokens that occur
 * (untied, the others have no gradient) and wpe rows of positions that occur. */
static size_t sample_param(const model_case *c, const param *p, size_t *idx) {
    const size_t C = (size_t)c->m->cfg.hidden_size;
    size_t n = p == c->m->wte ? 2 * SAMPLES : SAMPLES;
    if (n > p->numel) n = p->numel;
    for (size_t k = 0; k < n; k++) {
        if (p == c->m->wte && k % 2 == 0) idx[k] = (size_t)c->tokens[rng_below(&rng, MB * MT)] * C + rng_below(&rng, (uint32_t)C);
        else if (p == c->m->wpe) idx[k] = rng_below(&rng, (uint32_t)((NP + TT) * C));
        else idx[k] = rng_below(&rng, (uint32_t)p->numel);
    }
    return n;
}

static void check_model(const char *variant, model_arch arch, bool tied, rope_scaling_type scaling, bool qkv_bias) {
    rng_seed(&rng, 11 + arch + 2 * tied);
    model_case c;
    model_case_init(&c, arch, tied, scaling, qkv_bias);
    model *m = c.m;
    const size_t nvirt = (size_t)NV * m->cfg.hidden_size;
    float *dvirt = tu_zeros(nvirt), *dprefix = tu_zeros(c.nprefix);
    size_t idx[2 * SAMPLES + NV * MC];
    float num[2 * SAMPLES + NV * MC], ana[2 * SAMPLES + NV * MC];
    char what[256];

    double nll;
    int count;
    assert_int_equal(model_forward(m, c.a, &c.b, &nll, &count), PEFT_OK);
    assert_int_equal(count, MB * TT - 4);
    model_backward(m, c.a, &c.b, 1.0f / count, dvirt, dprefix);

    for (int i = 0; i < m->nparams; i++) {
        param *p = &m->params[i];
        const size_t n = sample_param(&c, p, idx);
        for (size_t k = 0; k < n; k++) ana[k] = p->grad[idx[k]];
        tu_numeric_grad(num, p->data, idx, n, MODEL_EPS, model_loss, &c);
        snprintf(what, sizeof what, "%s %s", variant, p->name);
        tu_check_grad(what, ana, num, n, MODEL_RTOL);
    }
    tu_numeric_grad(num, c.virt, NULL, nvirt, MODEL_EPS, model_loss, &c);
    snprintf(what, sizeof what, "%s virtual_embeds", variant);
    tu_check_grad(what, dvirt, num, nvirt, MODEL_RTOL);
    for (size_t k = 0; k < 2 * SAMPLES; k++) idx[k] = rng_below(&rng, (uint32_t)c.nprefix), ana[k] = dprefix[idx[k]];
    tu_numeric_grad(num, c.prefix, idx, 2 * SAMPLES, MODEL_EPS, model_loss, &c);
    snprintf(what, sizeof what, "%s prefix", variant);
    tu_check_grad(what, ana, num, 2 * SAMPLES, MODEL_RTOL);

    /* a second forward/backward adds the same gradients again */
    float *g1 = tu_copy_of(m->grads, m->ngrads), *v1 = tu_copy_of(dvirt, nvirt), *p1 = tu_copy_of(dprefix, c.nprefix);
    assert_int_equal(model_forward(m, c.a, &c.b, &nll, &count), PEFT_OK);
    model_backward(m, c.a, &c.b, 1.0f / count, dvirt, dprefix);
    tu_check_accumulates("model param grads accumulate", m->grads, g1, g1, m->ngrads, ACCUM_RTOL);
    tu_check_accumulates("model dvirtual accumulates", dvirt, v1, v1, nvirt, ACCUM_RTOL);
    tu_check_accumulates("model dprefix accumulates", dprefix, p1, p1, c.nprefix, ACCUM_RTOL);

    /* frozen base (prompt and prefix tuning): the same activation gradients without any weight's */
    assert_int_equal(model_set_trainable(m, train_nothing, NULL), PEFT_OK);
    memset(dvirt, 0, nvirt * sizeof *dvirt);
    memset(dprefix, 0, c.nprefix * sizeof *dprefix);
    assert_int_equal(model_forward(m, c.a, &c.b, &nll, &count), PEFT_OK);
    model_backward(m, c.a, &c.b, 1.0f / count, dvirt, dprefix);
    tu_assert_close("dvirtual with a frozen base", dvirt, v1, nvirt, ACCUM_RTOL);
    tu_assert_close("dprefix with a frozen base", dprefix, p1, c.nprefix, ACCUM_RTOL);
    free(dvirt), free(dprefix), free(g1), free(v1), free(p1);
    model_case_free(&c);
}


/* The fused output head (model_acts_set_fused_head) against the plain one: the same loss, weight
 * gradients and input-embedding gradients, over 1200 rows (two full HEAD_ROWS = 512-row blocks and a partial one,
 * rows without a target among them); model_logits() is NULL after a fused forward; with a
 * trainable head the plain path runs. */
static bool train_first_ln(const param *p, void *ctx) { return !strcmp(p->name, "transformer.h.0.ln_1.weight"); }

static void test_fused_head(void **state) {
    rng_seed(&rng, 77);
    model_config cfg;
    config_defaults(ARCH_GPT2, &cfg);
    cfg.vocab_size = 301, cfg.hidden_size = MC, cfg.num_layers = 2, cfg.num_heads = 4, cfg.max_positions = 64;
    assert_int_equal(config_finish(&cfg, "test"), PEFT_OK);
    model *m;
    assert_int_equal(model_init_random(&cfg, 43, GEMM_OPENBLAS, &m), PEFT_OK);
    for (int i = 0; i < m->nparams; i++)
        for (size_t j = 0; j < m->params[i].numel; j++) m->params[i].data[j] = 0.2f * rng_normal(&rng);
    assert_int_equal(model_set_trainable(m, train_first_ln, NULL), PEFT_OK);
    assert_int_equal((int)m->ngrads, MC); /* the weight-gradient comparison below must compare something */
    enum { FB = 20, FT = 60 };
    _Static_assert(FB * FT > 2 * HEAD_ROWS && FB * FT % HEAD_ROWS, "two full head blocks and a partial one");
    model_acts *a;
    assert_int_equal(model_acts_init(m, FB, FT, 0, &a), PEFT_OK);
    int tokens[FB * FT], targets[FB * FT];
    for (int i = 0; i < FB * FT; i++) tokens[i] = (int)rng_below(&rng, 301), targets[i] = (int)rng_below(&rng, 301);
    for (int i = 0; i < FB * FT; i += 7) targets[i] = -100;
    const model_batch b = {.B = FB, .T = FT, .tokens = tokens, .targets = targets};
    const size_t nemb = (size_t)FB * FT * MC;
    double nll[2];
    int count[2];
    float *grads[2], *demb[2];
    for (int fused = 0; fused < 2; fused++) {
        model_acts_set_fused_head(a, fused);
        memset(m->grads, 0, m->ngrads * sizeof(float));
        assert_int_equal(model_forward(m, a, &b, &nll[fused], &count[fused]), PEFT_OK);
        if ((model_logits(a) == NULL) != fused) fail_msg("model_logits() after a %s forward", fused ? "fused" : "plain");
        model_backward(m, a, &b, 1.0f / count[fused], NULL, NULL);
        grads[fused] = tu_copy_of(m->grads, m->ngrads);
        demb[fused] = tu_copy_of(model_dembed(a), nemb);
    }
    assert_int_equal(count[0], count[1]);
    if (fabs(nll[0] - nll[1]) > 1e-6 * fabs(nll[0])) fail_msg("fused head loss %.9g, plain %.9g", nll[1], nll[0]);
    tu_assert_close("fused head: weight gradients", grads[1], grads[0], m->ngrads, 1e-5);
    tu_assert_close("fused head: input embedding gradients", demb[1], demb[0], nemb, 1e-5);
    /* a trainable (tied) head: the plain path, whatever the setting */
    assert_int_equal(model_set_trainable(m, NULL, NULL), PEFT_OK);
    assert_int_equal(model_forward(m, a, &b, &nll[0], &count[0]), PEFT_OK);
    if (!model_logits(a)) fail_msg("a trainable head took the fused path");
    for (int i = 0; i < 2; i++) free(grads[i]), free(demb[i]);
    model_acts_free(a);
    model_free(m);
}

static void test_model_gpt2(void **state) { check_model("gpt2", ARCH_GPT2, true, ROPE_SCALING_NONE, false); }
static void test_model_llama(void **state) { check_model("llama", ARCH_LLAMA, false, ROPE_SCALING_NONE, false); }
/* tied head (wte gets both gradients), q/k/v biases and llama3 RoPE through the prefix offset */
static void test_model_llama_tied(void **state) {
    check_model("llama tied+bias+llama3", ARCH_LLAMA, true, ROPE_SCALING_LLAMA3, true);
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_head),
        cmocka_unit_test(test_model_gpt2),
        cmocka_unit_test(test_model_llama),
        cmocka_unit_test(test_model_llama_tied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
