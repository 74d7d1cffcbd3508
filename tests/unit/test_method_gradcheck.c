/*
 * test_method_gradcheck.c - central finite-difference checks of every PEFT method's gradients:
 * every trainable tensor the method registers (every entry of a small tensor, a random sample of a
 * large one), for full fine-tuning, LoRA (rsLoRA, lora_B bias, trained base biases,
 * layers_to_transform, GPT-2's fused c_attn), QLoRA (LoRA, IA3 and DoRA over NF4 bases), LoRA with
 * dropout, DoRA, IA3 (with feed-forward modules), prompt, prefix (direct and through the projection
 * MLP) and the bottleneck adapters (Houlsby, Bapna, Pfeiffer, parallel, io), on tiny GPT-2 and
 * Llama models.
 *
 * Set-up. The models are tu_model.h's (vocab 37, hidden 16, 2 layers) with the weights re-drawn at
 * std 0.2; the method's tensors are moved away from their initialisation (LoRA B, adapter
 * up-projections, IA3 vectors... random non-trivial values, see perturb()) because at a no-op
 * start many gradients vanish and the check could not fail. B = 2 sequences of T = 6 tokens, four
 * targets -1; the loss is the mean NLL: peft_model_forward, then
 * peft_model_backward(p, a, 1 / count).
 *
 * Method and tolerance as test_gradcheck.c (tu_gradcheck.h), with two additions. The numeric
 * gradient is the central quotient (L(x + h) - L(x - h)) / (2 h), dividing by the step actually
 * taken in fp32, at h = EPS and h = 2 EPS, extrapolated to h = 0 (Richardson: the O(h^2)
 * truncation error cancels; a plain quotient at EPS was off by up to 1e-2 where the loss is most
 * curved). The check is max|analytic - numeric| <= RTOL * max(max|numeric|, FD_NOISE / RTOL) over
 * one tensor: normwise relative to the tensor's own gradient scale, except that it never asks for
 * less than FD_NOISE absolute, the fp32 rounding noise of the quotient (a few ulps of a loss near
 * 4, over 2 EPS); a numeric gradient that vanishes fails (the check could not fail otherwise).
 *
 * ReLU adapters (Bapna, Pfeiffer, parallel and io by default): the loss has no derivative where a
 * pre-activation is 0. Each adapter's down-projection bias is shifted so that none is within
 * KINK_MARGIN of 0 at the point checked, and an entry whose steps still carry one across is
 * skipped (counted and printed; the check fails when more than half of a tensor's entries are).
 *
 * DoRA detaches the row norm ||W + s B A|| (as peft does), so its lora_A/lora_B gradients are not
 * those of the function the forward computes. The missing part follows from the magnitude's own
 * gradient (dL/dn_j = -(m_j / n_j) dL/dm_j) and is added in the test before comparing; the
 * magnitude's gradient is checked as it is.
 *
 * Dropout. With lora_dropout 0.3 the check runs once with training off (no dropout) and once with
 * training on and the mask fixed: the test restores the dropout generator's state (a plain struct,
 * peft_impl.h) before every forward. Separately: with training on two forwards give different
 * losses, with training off identical ones, and the gradients with and without dropout differ.
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
#include "peft/peft_impl.h"
#include "quant/qweight.h"
#include "rng.h"
#include "testutil.h"
#include "tu_gradcheck.h"
#include "tu_model.h"

/* The whole model in fp32, test_gradcheck_model.c's MODEL_EPS (a smaller step drowns in fp32
 * noise, a larger one in truncation error). In brackets the worst error seen over every method and both
 * families, 50 seeds: RTOL leaves a margin of 2x. */
#define EPS 5e-3f
#define RTOL 1e-2     /* [4.4e-3: llama LoRA on all seven linear layers, llama IA3] */
#define FD_NOISE 5e-5 /* [2.5e-5 seen where the gradients are ~1e-5] */

/* perturb(): the std the LoRA path adds to a unit-scale output. At 2, with every layer adapted,
 * the truncation error of the plain quotient reached 1e-1. */
#define LORA_PATH_STD 0.5f
/* ReLU adapters: no pre-activation within this of 0 at the point checked (10 EPS: a step of 2 EPS,
 * amplified through the layers, still crossed 0.025) */
#define KINK_MARGIN 0.05f

enum { B = 2, T = 6, NVT = 3, SMALL = 64, SAMPLES = 20, VOCAB = TU_TINY_VOCAB, HIDDEN = TU_TINY_HIDDEN };

static rng_state rng;

static double worst_rel; /* over the current test, for the summary line */

/* Fails unless max|ana - num| <= rtol * max(max|num|, FD_NOISE / rtol) (see the top of the file). */
static void check_grad(const char *what, const float *ana, const float *num, size_t n, double rtol) {
    const double rel = tu_grad_compare(what, ana, num, n, rtol, FD_NOISE);
    if (rel > worst_rel) worst_rel = rel;
}

/* ---- the tiny models ----------------------------------------------------------------------------- */

/* When set, tiny_model() stores the block weights compressed (QLoRA: NF4) after drawing them. */
static const model_opts *base_opts;

/* tu_model.h's tiny model (test_gradcheck_model.c's); Llama untied, with q/k/v and MLP biases so
 * lora_bias has something to train. */
static model *tiny_model(model_arch arch) {
    model_config cfg;
    tu_tiny_config(arch, &cfg);
    if (arch == ARCH_LLAMA) cfg.tie_word_embeddings = false, cfg.qkv_bias = true, cfg.mlp_bias = true;
    model *m = tu_tiny_model(&cfg, 42, &rng);
    if (base_opts && model_compress(m, base_opts)) fail_msg("model_compress: %s", err_msg());
    return m;
}

/* Moves the method's tensors away from their initialisation: IA3 vectors 1 + 0.3 N, DoRA
 * magnitudes the init's row norms times 1 + 0.2 N, norm gains 1 + 0.1 N, biases 0.1 N, prompt
 * rows N(0, 0.5^2), prefix keys/values and the prefix MLP's input N(0, 1), lora_B such that the
 * LoRA path adds std LORA_PATH_STD to a unit-scale output, every other matrix N(0, 1/fan_in) (lora_A,
 * adapter down/up, the prefix MLP): unit-scale outputs for unit-scale inputs. Full fine-tuning
 * keeps the re-drawn model weights it copied. */
static void perturb(peft_model *p) {
    const peft_config *pc = peft_model_config(p);
    if (pc->method == PEFT_FULL) return;
    const float s = pc->use_rslora ? pc->lora_alpha / sqrtf((float)pc->r) : pc->lora_alpha / (float)pc->r;
    const tensor_table *t = peft_model_table(p);
    float *params = peft_model_params(p);
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        float *x = params + e->offset;
        for (size_t j = 0; j < e->numel; j++) {
            const float z = rng_normal(&rng);
            if (tu_ends_with(e->name, "ia3_l")) x[j] = 1.0f + 0.3f * z;
            else if (tu_ends_with(e->name, "lora_B.weight")) x[j] = LORA_PATH_STD / (s * sqrtf((float)pc->r)) * z;
            else if (tu_ends_with(e->name, "lora_magnitude_vector")) x[j] *= 1.0f + 0.2f * z;
            else if (!strcmp(e->name, "prompt_embeddings")) x[j] = (e->shape[1] == HIDDEN ? 0.5f : 1.0f) * z;
            else if (!strcmp(e->name, "prompt_encoder.embedding.weight")) x[j] = z;
            else if (e->ndim == 2) x[j] = z / sqrtf((float)e->shape[1]);
            else if (tu_ends_with(e->name, ".weight")) x[j] = 1.0f + 0.1f * z;
            else x[j] = 0.1f * z;
        }
    }
}

/* ---- one method on one model --------------------------------------------------------------------- */

typedef struct {
    model *m;
    peft_model *p;
    model_acts *a;
    int tokens[B * T], targets[B * T];
    bool fix_mask;       /* restore the dropout generator before every forward */
    rng_state mask_rng;
    /* ReLU adapters: which pre-activations are positive, at the unperturbed parameters and now */
    unsigned char *signs, *signs_now;
    size_t nsigns;
    bool crossed;        /* a forward since the flag was cleared saw another sign pattern */
} method_case;

static size_t relu_signs(const method_case *c, unsigned char *out) {
    size_t k = 0;
    for (int i = 0; i < c->p->nadapters; i++) {
        const bottleneck *ad = &c->p->adapters[i];
        if (ad->act != BN_ACT_RELU) continue;
        for (size_t j = 0; j < (size_t)B * T * ad->d; j++, k++)
            if (out) out[k] = ad->pre[j] > 0.0f;
    }
    return k;
}

static double case_loss(method_case *c) {
    if (c->fix_mask) c->p->dropout_rng = c->mask_rng;
    double nll;
    int count;
    if (peft_model_forward(c->p, c->a, c->tokens, c->targets, B, T, &nll, &count)) fail_msg("%s", err_msg());
    assert_int_equal(count, B * T - 4);
    if (c->nsigns) {
        relu_signs(c, c->signs_now);
        c->crossed |= memcmp(c->signs_now, c->signs, c->nsigns) != 0;
    }
    return nll / count;
}

/* ReLU adapters: shifts each down-projection bias so that no pre-activation lies within
 * KINK_MARGIN of 0, where a step of EPS in another parameter would often carry it across the kink.
 * Adapter by adapter in forward order, since each shift changes what the later ones see. */
static void clear_relu_margins(method_case *c) {
    const float step = KINK_MARGIN / 4.0f;
    for (int i = 0; i < c->p->nadapters; i++) {
        bottleneck *ad = &c->p->adapters[i];
        if (ad->act != BN_ACT_RELU) continue;
        case_loss(c);
        for (int j = 0; j < ad->d; j++) {
            /* the smallest shift (0, -step, +step, -2 step, ...) that clears every row */
            int k = 0;
            for (; k < 400; k++) {
                const float sh = (float)((k + 1) / 2) * (k % 2 ? -step : step);
                bool clear = true;
                for (int row = 0; row < B * T && clear; row++)
                    clear = fabsf(ad->pre[(size_t)row * ad->d + j] + sh) >= KINK_MARGIN;
                if (clear) {
                    ad->down_b[j] += sh;
                    break;
                }
            }
            if (k == 400) fail_msg("adapter %d unit %d: no bias shift clears the ReLU kink", i, j);
        }
    }
}

/* The analytic gradients of case_loss into peft_model_grads; the ReLU signs they hold for. */
static void case_backward(method_case *c) {
    peft_model_zero_grad(c->p);
    case_loss(c);
    peft_model_backward(c->p, c->a, 1.0f / (float)(B * T - 4));
    relu_signs(c, c->signs);
}

/* The central difference quotient at x[i] +- h, dividing by the step actually taken in fp32. */
static double central(method_case *c, float *x, size_t i, float h, double *width) {
    const float x0 = x[i], xp = x0 + h, xm = x0 - h;
    x[i] = xp;
    const double lp = case_loss(c);
    x[i] = xm;
    const double lm = case_loss(c);
    x[i] = x0;
    *width = (double)xp - (double)xm;
    return (lp - lm) / *width;
}

/* num[k] = dL/dx[idx[k]]: the central quotients at steps EPS and 2 EPS (each O(h^2) in truncation
 * error) extrapolated to h = 0 (Richardson), with the widths actually taken; x is restored exactly.
 * kink[k]: a ReLU of an adapter changed sides within the steps, where the loss has no derivative
 * and the quotient means nothing. */
static void numeric_grad(method_case *c, float *num, bool *kink, float *x, const size_t *idx, size_t n) {
    for (size_t k = 0; k < n; k++) {
        double w1, w2;
        c->crossed = false;
        const double d1 = central(c, x, idx[k], EPS, &w1), d2 = central(c, x, idx[k], 2.0f * EPS, &w2);
        num[k] = (float)(d1 + (d1 - d2) / ((w2 / w1) * (w2 / w1) - 1.0));
        kink[k] = c->crossed;
    }
}

static void case_init(method_case *c, model_arch arch, const peft_config *pc) {
    memset(c, 0, sizeof *c);
    c->m = tiny_model(arch);
    if (peft_model_create(c->m, pc, NULL, &c->p)) fail_msg("peft_model_create: %s", err_msg());
    assert_int_equal(peft_model_reserve(c->p, B, T), PEFT_OK);
    assert_int_equal(model_acts_init(c->m, B, peft_model_positions(c->p, T), peft_model_prefix_len(c->p), &c->a),
                     PEFT_OK);
    perturb(c->p);
    for (int i = 0; i < B * T; i++) c->tokens[i] = (int)rng_below(&rng, VOCAB);
    for (int i = 0; i < B * T; i++) c->targets[i] = (int)rng_below(&rng, VOCAB);
    c->targets[0] = c->targets[3] = c->targets[T + 1] = c->targets[2 * T - 1] = -1;
    clear_relu_margins(c);
    c->nsigns = relu_signs(c, NULL);
    c->signs = malloc(c->nsigns + 1);
    c->signs_now = malloc(c->nsigns + 1);
    assert_true(c->signs && c->signs_now);
}

static void case_free(method_case *c) {
    free(c->signs);
    free(c->signs_now);
    model_acts_free(c->a);
    peft_model_free(c->p);
    model_free(c->m);
}

/* DoRA: adds to the analytic lora_A/lora_B gradients the part that flows through the row norm
 * n = ||W + s B A|| (detached in the forward): dL/dn_j = -(m_j / n_j) dL/dm_j, dn_j/dW'_jk = W'_jk / n_j,
 * so with G_jk = dL/dn_j W'_jk / n_j: dL/dB += s G A^T, dL/dA += s B^T G. */
static void dora_add_norm_path(method_case *c) {
    const tensor_table *t = peft_model_table(c->p);
    const peft_config *pc = peft_model_config(c->p);
    float *params = peft_model_params(c->p), *grads = peft_model_grads(c->p);
    const int r = pc->r;
    const float s = pc->use_rslora ? pc->lora_alpha / sqrtf((float)r) : pc->lora_alpha / (float)r;
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        if (!tu_ends_with(e->name, ".lora_magnitude_vector")) continue;
        char module[TT_NAME_MAX], key[TT_NAME_MAX + 32];
        tu_module_of(e->name, ".lora_magnitude_vector", module, sizeof module);
        const linear *l = tu_find_linear(c->m, module);
        snprintf(key, sizeof key, "base_model.model.%s.lora_A.weight", module);
        const tt_entry *ea = tt_find(t, key);
        snprintf(key, sizeof key, "base_model.model.%s.lora_B.weight", module);
        const tt_entry *eb = tt_find(t, key);
        assert_non_null(ea);
        assert_non_null(eb);
        const int in = l->in, out = l->out;
        const float *A = params + ea->offset, *Bm = params + eb->offset, *mag = params + e->offset;
        const float *dmag = grads + e->offset, *W = l->weight->data;
        float *dA = grads + ea->offset, *dB = grads + eb->offset;
        double *Wp = calloc((size_t)in, sizeof *Wp);
        assert_non_null(Wp);
        float *Wdec = NULL; /* a compressed base weight ([out, in]), decoded whole: tests only */
        if (l->weight->q) {
            Wdec = malloc((size_t)out * in * sizeof *Wdec);
            assert_non_null(Wdec);
            qweight_tile(l->weight->q, 0, out, 0, in, Wdec);
            W = Wdec;
        }
        for (int j = 0; j < out; j++) {
            double n2 = 0.0;
            for (int k = 0; k < in; k++) {
                double ba = 0.0;
                for (int q = 0; q < r; q++) ba += (double)Bm[(size_t)j * r + q] * A[(size_t)q * in + k];
                Wp[k] = (l->in_major ? W[(size_t)k * out + j] : W[(size_t)j * in + k]) + s * ba;
                n2 += Wp[k] * Wp[k];
            }
            const double n = sqrt(n2), dn = -(double)mag[j] / n * dmag[j];
            for (int k = 0; k < in; k++) {
                const double g = dn * Wp[k] / n;
                for (int q = 0; q < r; q++) {
                    dB[(size_t)j * r + q] += (float)(s * g * A[(size_t)q * in + k]);
                    dA[(size_t)q * in + k] += (float)(s * g * Bm[(size_t)j * r + q]);
                }
            }
        }
        free(Wp);
        free(Wdec);
    }
}

/* The entries of e to probe: all of a tensor of <= SMALL values; else SAMPLES random ones, half of
 * them among the entries with a non-zero analytic gradient (rows of wte/wpe for tokens and
 * positions that occur: a uniform sample of wpe can miss all of them). */
static size_t sample_entries(const tt_entry *e, const float *grads, size_t *idx) {
    if (e->numel <= SMALL) {
        for (size_t k = 0; k < e->numel; k++) idx[k] = k;
        return e->numel;
    }
    size_t nonzero = 0;
    for (size_t j = 0; j < e->numel; j++) nonzero += grads[e->offset + j] != 0.0f;
    for (size_t k = 0; k < SAMPLES; k++) {
        idx[k] = rng_below(&rng, (uint32_t)e->numel);
        if (k % 2 || !nonzero) continue;
        for (size_t skip = rng_below(&rng, (uint32_t)nonzero), j = 0; j < e->numel; j++)
            if (grads[e->offset + j] != 0.0f && skip-- == 0) {
                idx[k] = j;
                break;
            }
    }
    return SAMPLES;
}

/* Checks every tensor of the table: analytic (after case_backward, plus the DoRA norm path) against
 * central differences at every entry of a tensor of <= SMALL values, SAMPLES random ones otherwise. */
static void check_all_tensors(method_case *c, const char *variant) {
    case_backward(c);
    if (peft_model_config(c->p)->method == PEFT_DORA) dora_add_norm_path(c);
    const tensor_table *t = peft_model_table(c->p);
    float *params = peft_model_params(c->p);
    const float *grads = peft_model_grads(c->p);
    float *ana = tu_zeros(SMALL), *num = tu_zeros(SMALL);
    size_t idx[SMALL];
    bool kink[SMALL];
    int kinks = 0;
    char what[400];
    double worst_before = worst_rel;
    worst_rel = 0.0;
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        const size_t n = sample_entries(e, grads, idx);
        numeric_grad(c, num, kink, params + e->offset, idx, n);
        size_t m = 0; /* the entries without a kink, compacted */
        for (size_t k = 0; k < n; k++)
            if (!kink[k]) ana[m] = grads[e->offset + idx[k]], num[m++] = num[k];
        snprintf(what, sizeof what, "%s: %s", variant, e->name);
        if (m < (n + 1) / 2) fail_msg("%s: %zu of %zu entries straddle a ReLU kink, too few left", what, n - m, n);
        kinks += (int)(n - m);
        check_grad(what, ana, num, m, RTOL);
    }
    print_message("  %-30s %3d tensors, worst rel err %.2e (rtol %.0e), %d entries at a ReLU kink skipped\n", variant,
                  t->n, worst_rel, RTOL, kinks);
    worst_rel = fmax(worst_rel, worst_before);
    free(ana);
    free(num);
}

static void check_method(const char *variant, model_arch arch, const peft_config *pc) {
    method_case c;
    case_init(&c, arch, pc);
    peft_model_set_training(c.p, false);
    check_all_tensors(&c, variant);
    case_free(&c);
}

/* ---- the methods ----------------------------------------------------------------------------------- */

static peft_config cfg_of(peft_method m) {
    peft_config c;
    peft_config_defaults(&c, m);
    c.r = 4;
    c.lora_alpha = 8.0f;
    c.num_virtual_tokens = NVT;
    c.reduction_factor = 4.0f; /* bottleneck 4 on hidden 16 */
    return c;
}

static void test_full(void **state) {
    rng_seed(&rng, 100);
    peft_config c = cfg_of(PEFT_FULL);
    check_method("gpt2 full", ARCH_GPT2, &c);
    check_method("llama full", ARCH_LLAMA, &c);
}

/* QLoRA: LoRA (and IA3, DoRA) gradients through a frozen NF4 base (tiled dequantising products in the
 * forward and the input gradient), on every linear layer of both families. (bf16 compute is not
 * checked here: rounding every layer's input to bf16 makes the loss a step function at the scale of
 * a finite-difference step; test_qlinear.c and test_bnb_load.c compare it with fp32 instead.) */
static void test_qlora(void **state) {
    rng_seed(&rng, 108);
    const model_opts nf4 = {.quantize = MODEL_QUANT_NF4};
    base_opts = &nf4;
    peft_config c = cfg_of(PEFT_LORA);
    c.target_modules = "c_attn,attn.c_proj,c_fc,mlp.c_proj";
    c.lora_bias = "all";
    check_method("gpt2 qlora", ARCH_GPT2, &c);
    c.target_modules = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
    check_method("llama qlora", ARCH_LLAMA, &c);
    c = cfg_of(PEFT_IA3);
    check_method("llama ia3 over nf4", ARCH_LLAMA, &c);
    c = cfg_of(PEFT_DORA);
    c.target_modules = "c_attn,mlp.c_proj";
    check_method("gpt2 dora over nf4", ARCH_GPT2, &c);
    base_opts = NULL;
}

static void test_lora(void **state) {
    rng_seed(&rng, 101);
    peft_config c = cfg_of(PEFT_LORA);
    /* fused c_attn and the MLP's output, only layer 1, rsLoRA, lora_B bias, every base bias trains */
    c.target_modules = "c_attn,mlp.c_proj";
    c.layers_to_transform = "1";
    c.use_rslora = true;
    c.lora_alpha = 3.0f; /* s = 1.5 (alpha/r: 2): a larger s makes lora_B's steps of EPS count s times more */
    c.lora_b_bias = true;
    c.lora_bias = "all";
    check_method("gpt2 lora", ARCH_GPT2, &c);
    /* every linear layer of both layers, alpha/r, the targeted layers' biases: lora_only */
    c = cfg_of(PEFT_LORA);
    c.target_modules = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
    c.layers_to_transform = "0,1";
    c.lora_b_bias = true;
    c.lora_bias = "lora_only";
    check_method("llama lora", ARCH_LLAMA, &c);
    /* the family's default targets, all of GPT-2's linear layers with lora_only biases */
    c = cfg_of(PEFT_LORA);
    check_method("llama lora defaults", ARCH_LLAMA, &c);
    c.target_modules = "c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj";
    c.lora_bias = "lora_only";
    check_method("gpt2 lora all+lora_only", ARCH_GPT2, &c);
}

static void test_dora(void **state) {
    rng_seed(&rng, 102);
    peft_config c = cfg_of(PEFT_DORA);
    c.target_modules = "c_attn,mlp.c_fc";
    check_method("gpt2 dora", ARCH_GPT2, &c);
    c.target_modules = "q_proj,v_proj,up_proj";
    c.use_rslora = true;
    c.lora_alpha = 3.0f;
    check_method("llama dora", ARCH_LLAMA, &c);
}

static void test_ia3(void **state) {
    rng_seed(&rng, 103);
    peft_config c = cfg_of(PEFT_IA3); /* defaults: c_attn + mlp.c_proj (feed-forward), k/v + down_proj */
    check_method("gpt2 ia3", ARCH_GPT2, &c);
    check_method("llama ia3", ARCH_LLAMA, &c);
    c.target_modules = "c_attn,mlp.c_fc,mlp.c_proj";
    c.feedforward_modules = "mlp.c_fc,mlp.c_proj";
    check_method("gpt2 ia3 two ff", ARCH_GPT2, &c);
    c.target_modules = "q_proj,o_proj,gate_proj,up_proj";
    c.feedforward_modules = "gate_proj";
    check_method("llama ia3 gate ff", ARCH_LLAMA, &c);
}

static void test_prompt_prefix(void **state) {
    rng_seed(&rng, 104);
    peft_config c = cfg_of(PEFT_PROMPT);
    check_method("gpt2 prompt", ARCH_GPT2, &c);
    check_method("llama prompt", ARCH_LLAMA, &c);
    c = cfg_of(PEFT_PREFIX);
    check_method("gpt2 prefix", ARCH_GPT2, &c);
    check_method("llama prefix", ARCH_LLAMA, &c);
    c.prefix_projection = true;
    c.encoder_hidden_size = 12;
    check_method("gpt2 prefix projection", ARCH_GPT2, &c);
    check_method("llama prefix projection", ARCH_LLAMA, &c);
}

static void test_adapters(void **state) {
    rng_seed(&rng, 105);
    static const peft_method ms[] = {PEFT_HOULSBY, PEFT_BAPNA, PEFT_PFEIFFER, PEFT_PARALLEL, PEFT_IO};
    char what[64];
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        peft_config c = cfg_of(ms[i]);
        if (ms[i] == PEFT_PARALLEL) c.reduction_factor = 0.0f; /* its preset: 2 */
        snprintf(what, sizeof what, "gpt2 %s", peft_method_name(ms[i]));
        check_method(what, ARCH_GPT2, &c);
        snprintf(what, sizeof what, "llama %s", peft_method_name(ms[i]));
        check_method(what, ARCH_LLAMA, &c);
    }
    /* the other activations */
    peft_config c = cfg_of(PEFT_PFEIFFER);
    c.non_linearity = "gelu_new";
    check_method("gpt2 pfeiffer gelu_new", ARCH_GPT2, &c);
    c.non_linearity = "gelu";
    check_method("llama pfeiffer gelu", ARCH_LLAMA, &c);
}

/* ---- LoRA dropout ---------------------------------------------------------------------------------- */

static void check_dropout(model_arch arch, const char *family) {
    peft_config pc = cfg_of(PEFT_LORA);
    pc.lora_dropout = 0.3f;
    pc.target_modules = arch == ARCH_GPT2 ? "c_attn,mlp.c_fc" : "q_proj,v_proj,down_proj";
    pc.lora_b_bias = true;
    method_case c;
    case_init(&c, arch, &pc);
    char what[128];

    /* training off: no dropout, every forward the same function */
    peft_model_set_training(c.p, false);
    const double l0 = case_loss(&c), l0b = case_loss(&c);
    if (l0 != l0b) fail_msg("%s: training off, two forwards gave %.9g and %.9g", family, l0, l0b);
    snprintf(what, sizeof what, "%s lora dropout off", family);
    check_all_tensors(&c, what);
    const size_t total = peft_model_table(c.p)->total;
    float *g_off = tu_zeros(total);
    memcpy(g_off, peft_model_grads(c.p), total * sizeof *g_off);

    /* training on: a fresh mask every forward */
    peft_model_set_training(c.p, true);
    const double l1 = case_loss(&c), l2 = case_loss(&c);
    if (!(l1 != l2)) fail_msg("%s: training on, two forwards gave the same loss %.9g (dropout inactive?)", family, l1);
    if (!(l1 != l0)) fail_msg("%s: training on, the loss %.9g equals the loss without dropout", family, l1);
    print_message("  %s dropout 0.3: loss %.6f off, %.6f and %.6f on\n", family, l0, l1, l2);

    /* training on, the mask fixed: the gradient through the dropped input and the 1/(1-p) scale */
    c.fix_mask = true;
    c.mask_rng = c.p->dropout_rng;
    snprintf(what, sizeof what, "%s lora dropout, fixed mask", family);
    check_all_tensors(&c, what);
    const tensor_table *t = peft_model_table(c.p);
    const float *g_on = peft_model_grads(c.p);
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        if (!tu_ends_with(e->name, "lora_A.weight")) continue;
        double diff = tu_max_abs_diff(g_on + e->offset, g_off + e->offset, e->numel, NULL), scale = 0.0;
        for (size_t j = 0; j < e->numel; j++) scale = fmax(scale, fabs(g_off[e->offset + j]));
        /* a dropped input changes dA by O(p) of its size; 1% would be a mask that does nothing */
        if (!(diff > 0.01 * scale))
            fail_msg("%s: %s: the gradient with dropout differs from the one without by only %.3g (scale %.3g)", family,
                     e->name, diff, scale);
    }
    free(g_off);
    case_free(&c);
}

static void test_lora_dropout(void **state) {
    rng_seed(&rng, 106);
    check_dropout(ARCH_GPT2, "gpt2");
    check_dropout(ARCH_LLAMA, "llama");
}

int main(void) {
    gemm_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_qlora),
        cmocka_unit_test(test_dora),
        cmocka_unit_test(test_ia3),
        cmocka_unit_test(test_prompt_prefix),
        cmocka_unit_test(test_adapters),
        cmocka_unit_test(test_lora_dropout),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
