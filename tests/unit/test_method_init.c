/*
 * test_method_init.c - what a PEFT method promises at initialisation, what it counts, and what
 * peft_model_create refuses.
 *
 * No-op start: LoRA (B = 0), DoRA (B = 0, magnitude = the rows' norms), IA3 (ones) and the
 * bottleneck adapters (zero up-projection) leave the model's output unchanged: the logits with
 * the method attached equal the plain model's to 1e-6 (normwise relative, tu_assert_close), and the
 * initial values themselves are checked. Prompt and prefix tuning cannot promise that: their logits
 * must differ. peft_model_free detaches: the plain logits come back bit for bit.
 *
 * Counts: peft_model_counts against hand computations on a small GPT-2 and Llama, and GPT-2 124M
 * with LoRA r = 8 on c_attn against the numbers peft prints (294,912 trainable of 124,734,720),
 * through config_num_params (building the 124M model takes ~7 s and 500 MB).
 *
 * Errors: r <= 0, a target module that matches nothing (the message lists the model's modules), a
 * layer index out of range, dropout outside [0, 1), an unknown non-linearity... are each a
 * PEFT_EUSAGE naming the flag, and leave the model exactly as it was.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gemm.h"
#include "model/model.h"
#include "peft/peft.h"
#include "rng.h"
#include "testutil.h"
#include "tu_model.h"

/* The no-op methods compute the same sums as the plain model, in places in another order (DoRA
 * adds the bias after the product, the adapters' routing sums the residual stream differently):
 * a few ulps. Seen: 0 (bit for bit) for LoRA, IA3, io and full; up to 3.2e-7 for DoRA and the
 * other adapters. */
#define NOOP_RTOL 1e-6
/* DoRA's magnitude against the rows' norms computed here in double. */
#define NORM_RTOL 1e-6
/* Prompt and prefix must move the logits by more than this (relative to the largest logit, ~3). */
#define CHANGED_MIN 1e-2

enum { B = 2, T = 6, VOCAB = TU_TINY_VOCAB, NVT = 3 };

static rng_state rng;

/* tu_model.h's tiny model; llama with q/k/v and MLP biases so lora_bias has something to train. */
static model *tiny_model(model_arch arch) {
    model_config cfg;
    tu_tiny_config(arch, &cfg);
    if (arch == ARCH_LLAMA) cfg.qkv_bias = cfg.mlp_bias = true;
    return tu_tiny_model(&cfg, 7, &rng);
}

typedef struct {
    int tokens[B * T], targets[B * T];
} batch_data;

static void random_batch(batch_data *d) {
    for (int i = 0; i < B * T; i++) d->tokens[i] = (int)rng_below(&rng, VOCAB);
    for (int i = 0; i < B * T; i++) d->targets[i] = (int)rng_below(&rng, VOCAB);
    d->targets[2] = -1;
}

/* The plain model's logits [B, T, V] (malloc'd) and loss. */
static float *plain_logits(model *m, const batch_data *d, double *loss) {
    model_acts *a;
    assert_int_equal(model_acts_init(m, B, T, 0, &a), PEFT_OK);
    model_batch b = {.B = B, .T = T, .tokens = d->tokens, .targets = d->targets};
    double nll;
    int count;
    assert_int_equal(model_forward(m, a, &b, &nll, &count), PEFT_OK);
    *loss = nll / count;
    const size_t n = (size_t)B * T * VOCAB;
    float *out = malloc(n * sizeof *out);
    assert_non_null(out);
    memcpy(out, model_logits(a), n * sizeof *out);
    model_acts_free(a);
    return out;
}

/* The logits of the real tokens [B, T, V] with the method attached (malloc'd), training on (so a
 * LoRA dropout is active) and the loss. */
static float *method_logits(model *m, peft_model *p, const batch_data *d, double *loss) {
    assert_int_equal(peft_model_reserve(p, B, T), PEFT_OK);
    model_acts *a;
    const int S = peft_model_positions(p, T), nv = S - T;
    assert_int_equal(model_acts_init(m, B, S, peft_model_prefix_len(p), &a), PEFT_OK);
    peft_model_set_training(p, true);
    double nll;
    int count;
    if (peft_model_forward(p, a, d->tokens, d->targets, B, T, &nll, &count)) fail_msg("%s", err_msg());
    *loss = nll / count;
    float *out = malloc((size_t)B * T * VOCAB * sizeof *out);
    assert_non_null(out);
    const float *lg = model_logits(a);
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * T * VOCAB, lg + ((size_t)b * S + nv) * VOCAB, (size_t)T * VOCAB * sizeof *out);
    model_acts_free(a);
    return out;
}

static void assert_all(const char *what, const float *x, size_t n, float want) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != want) fail_msg("%s[%zu] = %.9g at initialisation, want %g", what, i, x[i], want);
}

/* The initial values the no-op promise rests on: lora_B (and its bias) zero, lora_A non-zero within
 * kaiming-uniform's bound 1/sqrt(in), DoRA's magnitude the norms of W's rows, IA3 ones, adapter
 * up-projections zero, Bapna's LayerNorm the identity. */
static void check_initial_values(model *m, peft_model *p) {
    const bool bapna = peft_model_config(p)->method == PEFT_BAPNA;
    const tensor_table *t = peft_model_table(p);
    const float *x = peft_model_params(p);
    int checked = 0;
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        const float *v = x + e->offset;
        if (tu_ends_with(e->name, "lora_B.weight") || tu_ends_with(e->name, "lora_B.bias") ||
            tu_ends_with(e->name, "adapter_up.weight") || tu_ends_with(e->name, "adapter_up.bias"))
            assert_all(e->name, v, e->numel, 0.0f), checked++;
        else if (tu_ends_with(e->name, "ia3_l")) assert_all(e->name, v, e->numel, 1.0f), checked++;
        else if (bapna && tu_ends_with(e->name, "adapter_down.0.weight")) /* the LayerNorm */
            assert_all(e->name, v, e->numel, 1.0f), checked++;
        else if (bapna && tu_ends_with(e->name, "adapter_down.0.bias"))
            assert_all(e->name, v, e->numel, 0.0f), checked++;
        else if (tu_ends_with(e->name, "lora_A.weight")) {
            const double bound = 1.0 / sqrt((double)e->shape[1]);
            double big = 0.0;
            for (size_t j = 0; j < e->numel; j++) {
                if (!(fabs(v[j]) <= bound)) fail_msg("%s[%zu] = %g outside +-1/sqrt(in) = %g", e->name, j, v[j], bound);
                big = fmax(big, fabs(v[j]));
            }
            if (!(big > 0.5 * bound))
                fail_msg("%s: largest |value| %g, not a kaiming-uniform draw (bound %g)", e->name, big, bound);
            checked++;
        } else if (tu_ends_with(e->name, ".lora_magnitude_vector")) {
            char module[TT_NAME_MAX];
            tu_module_of(e->name, ".lora_magnitude_vector", module, sizeof module);
            const linear *l = tu_find_linear(m, module);
            float *want = malloc((size_t)l->out * sizeof *want);
            assert_non_null(want);
            for (int r = 0; r < l->out; r++) {
                double ss = 0.0;
                for (int c = 0; c < l->in; c++) {
                    const float *W = l->weight->data;
                    const double w = l->in_major ? W[(size_t)c * l->out + r] : W[(size_t)r * l->in + c];
                    ss += w * w;
                }
                want[r] = (float)sqrt(ss);
            }
            tu_assert_close(e->name, v, want, (size_t)l->out, NORM_RTOL);
            free(want);
            checked++;
        }
    }
    if (!checked) fail_msg("no tensor with a promised initial value among %d", t->n);
}

static void check_noop(const char *what, model_arch arch, const peft_config *pc) {
    model *m = tiny_model(arch);
    batch_data d;
    random_batch(&d);
    double loss0, loss1, loss2;
    float *want = plain_logits(m, &d, &loss0);
    peft_model *p;
    if (peft_model_create(m, pc, NULL, &p)) fail_msg("%s: %s", what, err_msg());
    if (pc->method != PEFT_FULL) check_initial_values(m, p);
    float *got = method_logits(m, p, &d, &loss1);
    const size_t n = (size_t)B * T * VOCAB;
    char name[160];
    snprintf(name, sizeof name, "%s: logits at initialisation vs the plain model's", what);
    const double rel = tu_assert_close(name, got, want, n, NOOP_RTOL);
    if (!(fabs(loss1 - loss0) <= NOOP_RTOL * loss0))
        fail_msg("%s: loss %.9g with the method, %.9g without (rtol %.0e)", what, loss1, loss0, NOOP_RTOL);
    peft_model_free(p);
    float *after = plain_logits(m, &d, &loss2);
    if (memcmp(after, want, n * sizeof *after))
        fail_msg("%s: after peft_model_free the logits differ from the plain model's (max |diff| %.3g)", what,
                 tu_max_abs_diff(after, want, n, NULL));
    print_message("  %-34s logits max rel diff %.2e (rtol %.0e)\n", what, rel, NOOP_RTOL);
    free(want), free(got), free(after);
    model_free(m);
}

static peft_config cfg_of(peft_method method) {
    peft_config c;
    peft_config_defaults(&c, method);
    c.r = 4;
    c.num_virtual_tokens = NVT;
    c.reduction_factor = 4.0f;
    return c;
}

static void test_noop_at_init(void **state) {
    rng_seed(&rng, 1);
    static const model_arch archs[] = {ARCH_GPT2, ARCH_LLAMA};
    static const char *fam[] = {"gpt2", "llama"};
    char what[96];
    for (int f = 0; f < 2; f++) {
        peft_config c = cfg_of(PEFT_LORA);
        c.target_modules = f == 0 ? "c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj"
                                  : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
        c.use_rslora = true, c.lora_b_bias = true, c.lora_dropout = 0.2f, c.lora_bias = "all";
        snprintf(what, sizeof what, "%s lora (every layer, dropout)", fam[f]);
        check_noop(what, archs[f], &c);
        c = cfg_of(PEFT_DORA);
        c.target_modules = f == 0 ? "c_attn,mlp.c_fc,mlp.c_proj" : "q_proj,v_proj,gate_proj,down_proj";
        snprintf(what, sizeof what, "%s dora", fam[f]);
        check_noop(what, archs[f], &c);
        c = cfg_of(PEFT_IA3);
        snprintf(what, sizeof what, "%s ia3", fam[f]);
        check_noop(what, archs[f], &c);
        static const peft_method ads[] = {PEFT_HOULSBY, PEFT_BAPNA, PEFT_PFEIFFER, PEFT_PARALLEL, PEFT_IO};
        for (size_t i = 0; i < sizeof ads / sizeof ads[0]; i++) {
            c = cfg_of(ads[i]);
            snprintf(what, sizeof what, "%s %s", fam[f], peft_method_name(ads[i]));
            check_noop(what, archs[f], &c);
        }
        c = cfg_of(PEFT_FULL);
        snprintf(what, sizeof what, "%s full", fam[f]);
        check_noop(what, archs[f], &c);
    }
}

/* Prompt and prefix tuning: the real tokens' logits move. */
static void check_changes(const char *what, model_arch arch, const peft_config *pc) {
    model *m = tiny_model(arch);
    batch_data d;
    random_batch(&d);
    double loss0, loss1;
    float *want = plain_logits(m, &d, &loss0);
    peft_model *p;
    if (peft_model_create(m, pc, NULL, &p)) fail_msg("%s: %s", what, err_msg());
    float *got = method_logits(m, p, &d, &loss1);
    const size_t n = (size_t)B * T * VOCAB;
    double scale = 1.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    const double rel = tu_max_abs_diff(got, want, n, NULL) / scale;
    if (!(rel > CHANGED_MIN))
        fail_msg("%s: the virtual tokens change the logits by only %.3g (relative), want > %g", what, rel, CHANGED_MIN);
    print_message("  %-34s logits moved by %.2e (relative; > %.0e)\n", what, rel, CHANGED_MIN);
    peft_model_free(p);
    free(want), free(got);
    model_free(m);
}

static void test_prompt_prefix_change_output(void **state) {
    rng_seed(&rng, 2);
    peft_config c = cfg_of(PEFT_PROMPT);
    check_changes("gpt2 prompt", ARCH_GPT2, &c);
    check_changes("llama prompt", ARCH_LLAMA, &c);
    c = cfg_of(PEFT_PREFIX);
    check_changes("gpt2 prefix", ARCH_GPT2, &c);
    check_changes("llama prefix", ARCH_LLAMA, &c);
    c.prefix_projection = true;
    check_changes("gpt2 prefix projection", ARCH_GPT2, &c);
    check_changes("llama prefix projection", ARCH_LLAMA, &c);
}

/* ---- counts ------------------------------------------------------------------------------------- */

static void expect_counts(const char *what, model *m, const peft_config *pc, long long want_trainable,
                          long long want_total) {
    peft_model *p;
    if (peft_model_create(m, pc, NULL, &p)) fail_msg("%s: %s", what, err_msg());
    long long trainable, total;
    peft_model_counts(p, &trainable, &total);
    if (trainable != want_trainable || total != want_total)
        fail_msg("%s: trainable %lld, total %lld; want %lld and %lld", what, trainable, total, want_trainable,
                 want_total);
    peft_model_free(p);
}

/* GPT-2 124M, LoRA r = 8 on c_attn: peft's print_trainable_parameters says "trainable params:
 * 294,912 || all params: 124,734,720". Each of 12 c_attn (768 -> 2304) gets A [8, 768] and
 * B [2304, 8]. */
static void test_counts_gpt2_124m(void **state) {
    model_config cfg;
    config_defaults(ARCH_GPT2, &cfg);
    assert_int_equal(config_finish(&cfg, "test"), PEFT_OK);
    assert_int_equal(cfg.hidden_size, 768);
    assert_int_equal(cfg.num_layers, 12);
    assert_int_equal(cfg.vocab_size, 50257);
    const long long lora = 12LL * 8 * (768 + 2304);
    assert_int_equal(lora, 294912);
    assert_int_equal(config_num_params(&cfg), 124439808LL);
    assert_int_equal(config_num_params(&cfg) + lora, 124734720LL);
}

/* A smaller GPT-2 built for real: every method's count by hand. C = 32, L = 3, V = 50, P = 64. */
static void test_counts_gpt2_small(void **state) {
    model_config cfg;
    config_defaults(ARCH_GPT2, &cfg);
    cfg.vocab_size = 50, cfg.hidden_size = 32, cfg.num_layers = 3, cfg.num_heads = 4, cfg.max_positions = 64;
    assert_int_equal(config_finish(&cfg, "test"), PEFT_OK);
    const long long C = 32, L = 3, V = 50, P = 64, I = 4 * C;
    const long long layer = 4 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * I + I) + (I * C + C);
    const long long base = V * C + P * C + 2 * C + L * layer;
    model *m;
    assert_int_equal(model_init_random(&cfg, 3, GEMM_OPENBLAS, &m), PEFT_OK);
    long long stored = 0;
    for (int i = 0; i < m->nparams; i++) stored += (long long)m->params[i].numel;
    assert_int_equal(stored, base); /* tied head: wte once */
    assert_int_equal(config_num_params(&cfg), base);

    peft_config c;
    peft_config_defaults(&c, PEFT_LORA); /* r 8 on c_attn */
    expect_counts("lora c_attn r=8", m, &c, L * 8 * (C + 3 * C), base + L * 8 * (C + 3 * C));
    c.target_modules = "c_attn,mlp.c_proj";
    c.layers_to_transform = "0,2";
    c.r = 4;
    c.lora_b_bias = true;
    const long long lora2 = 2 * (4 * (C + 3 * C) + 3 * C + 4 * (I + C) + C);
    expect_counts("lora c_attn+mlp.c_proj layers 0,2, B bias", m, &c, lora2, base + lora2);
    /* lora_bias all: every base bias trains, but stays counted once, in the base */
    c.lora_bias = "all";
    const long long biases = C + L * (2 * C + 3 * C + C + I + C); /* ln_f; ln_1, ln_2, c_attn, c_proj, c_fc, c_proj */
    expect_counts("lora + lora_bias all", m, &c, lora2 + biases, base + lora2);

    peft_config_defaults(&c, PEFT_DORA);
    c.r = 4;
    expect_counts("dora c_attn", m, &c, L * (4 * (C + 3 * C) + 3 * C), base + L * (4 * (C + 3 * C) + 3 * C));
    peft_config_defaults(&c, PEFT_IA3); /* c_attn (out) and mlp.c_proj (feed-forward: in) */
    expect_counts("ia3", m, &c, L * (3 * C + I), base + L * (3 * C + I));
    peft_config_defaults(&c, PEFT_PROMPT);
    c.num_virtual_tokens = 10;
    expect_counts("prompt 10", m, &c, 10 * C, base + 10 * C);
    peft_config_defaults(&c, PEFT_PREFIX);
    c.num_virtual_tokens = 10;
    expect_counts("prefix 10", m, &c, 10 * L * 2 * C, base + 10 * L * 2 * C);
    c.prefix_projection = true;
    c.encoder_hidden_size = 24;
    const long long mlp = 10 * C + (24 * C + 24) + (L * 2 * C * 24 + L * 2 * C);
    expect_counts("prefix 10 projection 24", m, &c, mlp, base + mlp);
    const long long d = C / 4, ad = 2 * d * C + d + C;
    peft_config_defaults(&c, PEFT_HOULSBY);
    c.reduction_factor = 4;
    expect_counts("houlsby rf 4", m, &c, 2 * L * ad, base + 2 * L * ad);
    peft_config_defaults(&c, PEFT_BAPNA);
    c.reduction_factor = 4;
    expect_counts("bapna rf 4", m, &c, L * (ad + 2 * C), base + L * (ad + 2 * C));
    peft_config_defaults(&c, PEFT_PFEIFFER); /* preset 16: d = 2 */
    expect_counts("pfeiffer", m, &c, L * (2 * 2 * C + 2 + C), base + L * (2 * 2 * C + 2 + C));
    peft_config_defaults(&c, PEFT_PARALLEL); /* preset 2: d = 16 */
    expect_counts("parallel", m, &c, L * (2 * 16 * C + 16 + C), base + L * (2 * 16 * C + 16 + C));
    peft_config_defaults(&c, PEFT_IO);
    c.reduction_factor = 4;
    expect_counts("io rf 4", m, &c, 2 * ad, base + 2 * ad);
    peft_config_defaults(&c, PEFT_FULL);
    expect_counts("full", m, &c, base, base);
    model_free(m);
}

/* Llama with grouped-query attention and an untied head: C = 32, 4 heads on 2 kv heads (K = 16),
 * I = 48, L = 2, V = 50. */
static void test_counts_llama_small(void **state) {
    model_config cfg;
    config_defaults(ARCH_LLAMA, &cfg);
    cfg.vocab_size = 50, cfg.hidden_size = 32, cfg.num_layers = 2, cfg.num_heads = 4, cfg.num_kv_heads = 2;
    cfg.intermediate_size = 48, cfg.tie_word_embeddings = false;
    assert_int_equal(config_finish(&cfg, "test"), PEFT_OK);
    const long long C = 32, L = 2, V = 50, K = 16, I = 48;
    const long long base = 2 * V * C + C + L * (2 * C + C * (C + 2 * K) + C * C + 3 * C * I);
    model *m;
    assert_int_equal(model_init_random(&cfg, 3, GEMM_OPENBLAS, &m), PEFT_OK);
    long long stored = 0;
    for (int i = 0; i < m->nparams; i++) stored += (long long)m->params[i].numel;
    assert_int_equal(stored, base);
    assert_int_equal(config_num_params(&cfg), base);
    peft_config c;
    peft_config_defaults(&c, PEFT_LORA); /* r 8 on q_proj, v_proj */
    const long long lora = L * (8 * (C + C) + 8 * (C + K));
    expect_counts("llama lora q,v r=8", m, &c, lora, base + lora);
    peft_config_defaults(&c, PEFT_IA3); /* k, v (out), down_proj (feed-forward: in) */
    expect_counts("llama ia3", m, &c, L * (K + K + I), base + L * (K + K + I));
    peft_config_defaults(&c, PEFT_PREFIX);
    c.num_virtual_tokens = 5;
    expect_counts("llama prefix 5 (kv heads)", m, &c, 5 * L * 2 * K, base + 5 * L * 2 * K);
    peft_config_defaults(&c, PEFT_FULL);
    expect_counts("llama full", m, &c, base, base);
    model_free(m);
}

/* ---- errors ------------------------------------------------------------------------------------- */

typedef struct {
    float **data;   /* every param's data pointer */
    float *weights; /* a copy of the arena */
} model_snapshot;

static model_snapshot snapshot(const model *m) {
    model_snapshot s = {malloc((size_t)m->nparams * sizeof *s.data), malloc(m->nweights * sizeof(float))};
    assert_true(s.data && s.weights);
    for (int i = 0; i < m->nparams; i++) s.data[i] = m->params[i].data;
    memcpy(s.weights, m->weights, m->nweights * sizeof(float));
    return s;
}

/* Nothing attached, nothing redirected, nothing written, no gradients. */
static void assert_untouched(const char *what, const model *m, const model_snapshot *s) {
    if (m->grads) fail_msg("%s: the model has gradients after a failed create", what);
    if (m->in_ad || m->out_ad) fail_msg("%s: an io adapter is attached after a failed create", what);
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const block *b = &m->blocks[l];
        const linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc, &b->up, &b->down};
        for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
            if (ls[i]->hook) fail_msg("%s: %s keeps a hook after a failed create", what, ls[i]->module);
        if (b->attn_ad || b->mlp_ad) fail_msg("%s: layer %d keeps an adapter after a failed create", what, l);
    }
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].data != s->data[i] || m->params[i].grad)
            fail_msg("%s: %s was redirected after a failed create", what, m->params[i].name);
    if (memcmp(m->weights, s->weights, m->nweights * sizeof(float))) fail_msg("%s: the weights changed", what);
}

/* peft_model_create fails with PEFT_EUSAGE, a message holding every string of `needles`, *out NULL
 * and the model untouched. */
static void expect_usage(model *m, const peft_config *pc, const char *what, const char *const *needles) {
    model_snapshot s = snapshot(m);
    static char sentinel;
    peft_model *p = (peft_model *)(void *)&sentinel; /* must be reset to NULL */
    const int rc = peft_model_create(m, pc, NULL, &p);
    if (rc != PEFT_EUSAGE) fail_msg("%s: peft_model_create returned %d (%s), want PEFT_EUSAGE", what, rc, err_msg());
    if (p) fail_msg("%s: *out is not NULL after a failure", what);
    const char *msg = err_msg();
    for (; *needles; needles++)
        if (!strstr(msg, *needles)) fail_msg("%s: the message \"%s\" does not contain \"%s\"", what, msg, *needles);
    if (strchr(msg, '\n')) fail_msg("%s: the message is not one line: \"%s\"", what, msg);
    assert_untouched(what, m, &s);
    print_message("  %-30s %s\n", what, msg);
    free(s.data);
    free(s.weights);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_errors(void **state) {
    rng_seed(&rng, 3);
    model *g = tiny_model(ARCH_GPT2), *l = tiny_model(ARCH_LLAMA);
    peft_config c;

    c = cfg_of(PEFT_LORA);
    c.r = 0;
    expect_usage(g, &c, "lora r = 0", NEEDLES("--r", "0"));
    c = cfg_of(PEFT_DORA);
    c.r = -3;
    expect_usage(l, &c, "dora r = -3", NEEDLES("--r", "-3"));

    c = cfg_of(PEFT_LORA);
    c.target_modules = "q_proj,v_proj";
    expect_usage(g, &c, "gpt2: llama's modules", NEEDLES("--target-modules", "q_proj,v_proj", "c_attn", "attn.c_proj",
                                                         "mlp.c_fc", "mlp.c_proj"));
    c.target_modules = "c_attn";
    expect_usage(l, &c, "llama: gpt2's module", NEEDLES("--target-modules", "c_attn", "q_proj", "k_proj", "v_proj",
                                                        "o_proj", "gate_proj", "up_proj", "down_proj"));
    c = cfg_of(PEFT_IA3);
    c.target_modules = "attn";
    expect_usage(g, &c, "ia3: a partial name", NEEDLES("--target-modules", "'attn'", "c_attn"));

    c = cfg_of(PEFT_LORA);
    c.layers_to_transform = "0,2";
    expect_usage(g, &c, "layer 2 of 2", NEEDLES("--layers-to-transform", "2", "2 layers"));
    c.layers_to_transform = "-1";
    expect_usage(l, &c, "layer -1", NEEDLES("--layers-to-transform", "-1"));
    c.layers_to_transform = "0,x";
    expect_usage(l, &c, "layer 'x'", NEEDLES("--layers-to-transform", "0,x"));

    c = cfg_of(PEFT_LORA);
    c.lora_dropout = 1.0f;
    expect_usage(g, &c, "dropout 1", NEEDLES("--lora-dropout", "1"));
    c.lora_dropout = -0.1f;
    expect_usage(l, &c, "dropout -0.1", NEEDLES("--lora-dropout", "-0.1"));

    c = cfg_of(PEFT_HOULSBY);
    c.non_linearity = "tanh";
    expect_usage(g, &c, "houlsby tanh", NEEDLES("--non-linearity", "tanh", "relu"));
    c = cfg_of(PEFT_PARALLEL);
    c.non_linearity = "ReLU";
    expect_usage(l, &c, "parallel ReLU", NEEDLES("--non-linearity", "ReLU"));

    c = cfg_of(PEFT_LORA);
    c.lora_bias = "some";
    expect_usage(g, &c, "lora_bias some", NEEDLES("--lora-bias", "some"));
    c = cfg_of(PEFT_PROMPT);
    c.num_virtual_tokens = 0;
    expect_usage(g, &c, "prompt 0 virtual tokens", NEEDLES("--num-virtual-tokens"));
    c = cfg_of(PEFT_PROMPT);
    c.prompt_init_text = "hello";
    expect_usage(l, &c, "prompt text, no tokenizer", NEEDLES("--prompt-init-text"));

    /* after all that, the models still take a method */
    c = cfg_of(PEFT_BAPNA);
    peft_model *p;
    if (peft_model_create(g, &c, NULL, &p)) fail_msg("after the failures: %s", err_msg());
    peft_model_free(p);
    model_free(g);
    model_free(l);
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noop_at_init),
        cmocka_unit_test(test_prompt_prefix_change_output),
        cmocka_unit_test(test_counts_gpt2_124m),
        cmocka_unit_test(test_counts_gpt2_small),
        cmocka_unit_test(test_counts_llama_small),
        cmocka_unit_test(test_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
