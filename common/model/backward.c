/* backward.c - the transformer backward pass (see model.h): activation gradients through every
 * layer, weight gradients only where a param has a grad buffer. */
#include <string.h>

#include "kernels/attention.h"
#include "kernels/ops.h"
#include "kernels/rope.h"
#include "model/acts.h"
#include "peft/bottleneck.h"

#define LAYER(buf, l, per_layer) ((buf) + (size_t)(l) * (per_layer))

static void norm_backward(const model *m, float *dinp, param *w, param *bias, const float *dout, const float *inp,
                          const float *mean, const float *rstd, int N) {
    const int C = m->cfg.hidden_size;
    if (m->cfg.arch == ARCH_GPT2)
        layernorm_backward(dinp, w->grad, bias->grad, dout, inp, w->data, mean, rstd, N, C);
    else rmsnorm_backward(dinp, w->grad, dout, inp, w->data, rstd, N, C);
}

static void layer_backward(model *m, model_acts *a, const model_batch *b, int l, float *dprefix) {
    const model_config *c = &m->cfg;
    const block *bl = &m->blocks[l];
    const gemm_backend be = m->gemm;
    const int B = a->cur_B, T = a->cur_T, N = B * T, C = c->hidden_size, I = c->intermediate_size;
    const int A = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim, QKV = A + 2 * K;
    const size_t Ncap = (size_t)a->B * a->T, S = (size_t)a->P + a->T;
    const float *x = LAYER(a->resid, l, Ncap * C), *mid = LAYER(a->resid_mid, l, Ncap * C);
    const float *ln1 = LAYER(a->ln1, l, Ncap * C), *ln2 = LAYER(a->ln2, l, Ncap * C);
    const float *qkv = LAYER(a->qkv, l, Ncap * QKV), *atty = LAYER(a->atty, l, Ncap * A);
    const float *probs = LAYER(a->probs, l, (size_t)a->B * c->num_heads * a->T * S);
    const float *fc = LAYER(a->fc, l, Ncap * I), *act = LAYER(a->act, l, Ncap * I);
    const float *ln1_mean = a->ln1_mean ? LAYER(a->ln1_mean, l, Ncap) : NULL;
    const float *ln2_mean = a->ln2_mean ? LAYER(a->ln2_mean, l, Ncap) : NULL;
    const float *ln1_rstd = LAYER(a->ln1_rstd, l, Ncap), *ln2_rstd = LAYER(a->ln2_rstd, l, Ncap);
    const size_t NI = (size_t)N * I;

    /* MLP: a->dres is the gradient of this layer's output = mid + mlp(norm2(mid)) [+ adapter] */
    const float *dm = a->dres; /* gradient of the MLP output m */
    if (bl->mlp_ad) {
        bottleneck *ad = bl->mlp_ad;
        bottleneck_backward(be, ad, a->dres, N);
        if (ad->input != BN_IN_RESIDUAL) { /* v involves m: dm = g + dv (a->dln is free until fc's backward) */
            for (size_t i = 0; i < (size_t)N * C; i++) a->dln[i] = a->dres[i] + ad->dv[i];
            dm = a->dln;
        }
    }
    linear_backward(be, &bl->down, a->dact, I, dm, C, act, I, N, 0);
    if (bl->mlp_ad && bl->mlp_ad->input != BN_IN_SUBLAYER) /* v involves the stream u (after dm is used) */
        for (size_t i = 0; i < (size_t)N * C; i++) a->dres[i] += bl->mlp_ad->dv[i];
    memset(a->dfc, 0, NI * sizeof(float));
    if (c->arch == ARCH_GPT2) {
        gelu_backward(a->dfc, a->dact, fc, NI, c->act == ACT_GELU_TANH);
        linear_backward(be, &bl->fc, a->dln, C, a->dfc, I, ln2, C, N, 0);
    } else {
        const float *up = LAYER(a->up, l, Ncap * I);
        memset(a->dup, 0, NI * sizeof(float));
        swiglu_backward(a->dfc, a->dup, a->dact, fc, up, NI);
        linear_backward(be, &bl->fc, a->dln, C, a->dfc, I, ln2, C, N, 0);
        linear_backward(be, &bl->up, a->dln, C, a->dup, I, ln2, C, N, 1);
    }
    norm_backward(m, a->dres, bl->ln2_w, bl->ln2_b, a->dln, mid, ln2_mean, ln2_rstd, N);

    /* attention: a->dres is now the gradient of mid = x + o(attention(norm1(x))) [+ adapter(a)] */
    const float *da = a->dres;
    if (bl->attn_ad) {
        bottleneck_backward(be, bl->attn_ad, a->dres, N);
        for (size_t i = 0; i < (size_t)N * C; i++) a->dln[i] = a->dres[i] + bl->attn_ad->dv[i];
        da = a->dln;
    }
    linear_backward(be, &bl->o, a->datty, A, da, C, atty, A, N, 0);
    memset(a->dqkv, 0, (size_t)N * QKV * sizeof(float));
    attn_shape s;
    model_attn_shape(m, a, &s);
    const float *pk = b->prefix ? b->prefix + (size_t)2 * l * K : NULL, *pv = pk ? pk + K : NULL;
    float *dpk = dprefix ? dprefix + (size_t)2 * l * K : NULL, *dpv = dpk ? dpk + K : NULL;
    attention_backward(a->dqkv, dpk, dpv, a->attn_work, probs, a->datty, qkv, pk, pv, &s);
    if (c->arch == ARCH_GPT2) {
        linear_backward(be, &bl->qkv, a->dln, C, a->dqkv, QKV, ln1, C, N, 0);
    } else {
        rope_apply(a->dqkv, QKV, 0, c->num_heads, c->head_dim, B, T, b->n_prefix, a->rope_cos, a->rope_sin, 1);
        rope_apply(a->dqkv, QKV, A, c->num_kv_heads, c->head_dim, B, T, b->n_prefix, a->rope_cos, a->rope_sin, 1);
        linear_backward(be, &bl->q, a->dln, C, a->dqkv, QKV, ln1, C, N, 0);
        linear_backward(be, &bl->k, a->dln, C, a->dqkv + A, QKV, ln1, C, N, 1);
        linear_backward(be, &bl->v, a->dln, C, a->dqkv + A + K, QKV, ln1, C, N, 1);
    }
    norm_backward(m, a->dres, bl->ln1_w, bl->ln1_b, a->dln, x, ln1_mean, ln1_rstd, N);
}

/* The input embeddings' gradient (a->dres after layer 0) into wte, wpe and the virtual tokens. */
static void embed_backward(model *m, model_acts *a, const model_batch *b, float *dvirtual) {
    const int C = m->cfg.hidden_size, nv = b->n_virtual, T = a->cur_T, N = a->cur_B * T;
    memcpy(a->dembed, a->dres, (size_t)N * C * sizeof(float));
    float *dwte = m->wte->grad, *dwpe = m->wpe ? m->wpe->grad : NULL;
    /* Serial over rows: the same token or position may occur in many rows. */
    for (int s = 0; s < a->cur_B; s++)
        for (int t = 0; t < T; t++) {
            const float *g = a->dres + ((size_t)s * T + t) * C;
            float *dst = t < nv ? (dvirtual ? dvirtual + (size_t)t * C : NULL)
                                : (dwte ? dwte + (size_t)b->tokens[(size_t)s * b->T + (t - nv)] * C : NULL);
            if (dst)
                for (int j = 0; j < C; j++) dst[j] += g[j];
            if (dwpe) {
                float *dp = dwpe + (size_t)(b->n_prefix + t) * C;
                for (int j = 0; j < C; j++) dp[j] += g[j];
            }
        }
}

void model_backward(model *m, model_acts *a, const model_batch *b, float loss_scale, float *dvirtual,
                    float *dprefix) {
    const model_config *c = &m->cfg;
    const int N = a->cur_B * a->cur_T, C = c->hidden_size, L = c->num_layers;
    const float *x = a->resid + (size_t)L * a->B * a->T * C;
    if (a->head_fused) { /* the forward already took the loss back through the head */
        for (size_t i = 0; i < (size_t)N * C; i++) a->dln[i] = loss_scale * a->dhead[i];
    } else {
        xent_backward(a->logits, b->targets, loss_scale, N, c->vocab_size);
        linear_backward(m->gemm, &m->head, a->dln, C, a->logits, c->vocab_size, a->lnf, C, N, 0);
    }
    memset(a->dres, 0, (size_t)N * C * sizeof(float));
    norm_backward(m, a->dres, m->lnf_w, m->lnf_b, a->dln, x, a->lnf_mean, a->lnf_rstd, N);
    if (m->out_ad) {
        bottleneck_backward(m->gemm, m->out_ad, a->dres, N);
        for (size_t i = 0; i < (size_t)N * C; i++) a->dres[i] += m->out_ad->dv[i];
    }
    for (int l = L - 1; l >= m->grad_floor; l--) layer_backward(m, a, b, l, dprefix);
    if (m->grad_floor > 0) return;
    if (m->in_ad) {
        bottleneck_backward(m->gemm, m->in_ad, a->dres, N);
        for (size_t i = 0; i < (size_t)N * C; i++) a->dres[i] += m->in_ad->dv[i];
    }
    embed_backward(m, a, b, dvirtual);
}
