/* forward.c - the transformer forward pass over a model_batch (see model.h). */
#include <string.h>

#include "error.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "kernels/parallel.h"
#include "kernels/rope.h"
#include "model/acts.h"
#include "peft/bottleneck.h"

/* Layer l's slice of a per-layer buffer laid out with the capacity's stride. */
#define LAYER(buf, l, per_layer) ((buf) + (size_t)(l) * (per_layer))

static int check_batch(const model *m, const model_acts *a, const model_batch *b) {
    const model_config *c = &m->cfg;
    const int T = b->n_virtual + b->T;
    if (b->B <= 0 || b->T < 0 || T <= 0 || b->n_virtual < 0 || b->n_prefix < 0)
        return err_set(PEFT_EUSAGE, "empty or negative batch shape %d x %d", b->B, b->T);
    if (b->B > a->B || T > a->T || b->n_prefix > a->P)
        return err_set(PEFT_EUSAGE, "batch %d x %d (+%d prefix) exceeds the allocated %d x %d (+%d)", b->B, T,
                       b->n_prefix, a->B, a->T, a->P);
    if ((b->n_virtual > 0) != (b->virtual_embeds != NULL) || (b->n_prefix > 0) != (b->prefix != NULL))
        return err_set(PEFT_EUSAGE, "virtual embeddings or prefix given without their count");
    if (c->arch == ARCH_GPT2 && b->n_prefix + T > c->max_positions)
        return err_set(PEFT_EMISMATCH, "%d positions exceed the model's n_positions = %d", b->n_prefix + T,
                       c->max_positions);
    for (long i = 0; i < (long)b->B * b->T; i++)
        if (b->tokens[i] < 0 || b->tokens[i] >= c->vocab_size)
            return err_set(PEFT_EMISMATCH, "token id %d at position %ld is outside the vocabulary [0, %d)", b->tokens[i],
                           i, c->vocab_size);
    return PEFT_OK;
}

static void embed_forward(const model *m, const model_batch *b, float *out) {
    const int C = m->cfg.hidden_size, nv = b->n_virtual, T = nv + b->T;
    const float *wte = m->wte->data, *wpe = m->wpe ? m->wpe->data : NULL;
#pragma omp parallel for collapse(2) if (PEFT_PAR((size_t)b->B * T * C))
    for (int s = 0; s < b->B; s++)
        for (int t = 0; t < T; t++) {
            float *x = out + ((size_t)s * T + t) * C;
            const float *e = t < nv ? b->virtual_embeds + (size_t)t * C
                                    : wte + (size_t)b->tokens[(size_t)s * b->T + (t - nv)] * C;
            if (wpe) {
                const float *pe = wpe + (size_t)(b->n_prefix + t) * C;
                for (int j = 0; j < C; j++) x[j] = e[j] + pe[j];
            } else {
                memcpy(x, e, (size_t)C * sizeof(float));
            }
        }
}

void model_attn_shape(const model *m, const model_acts *a, attn_shape *s) {
    const model_config *c = &m->cfg;
    const int A = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim;
    *s = (attn_shape){.B = a->cur_B, .T = a->cur_T, .H = c->num_heads, .KV = c->num_kv_heads, .hd = c->head_dim,
                      .P = a->cur_P, .ld = A + 2 * K, .q_off = 0, .k_off = A, .v_off = A + K,
                      .p_ld = c->num_layers * 2 * K, .threads = a->attn_threads};
}

static void layer_forward(model *m, model_acts *a, const model_batch *b, int l) {
    const model_config *c = &m->cfg;
    const block *bl = &m->blocks[l];
    const gemm_backend be = m->gemm;
    const int B = a->cur_B, T = a->cur_T, N = B * T, C = c->hidden_size, I = c->intermediate_size;
    const int A = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim, QKV = A + 2 * K;
    const size_t Ncap = (size_t)a->B * a->T, S = (size_t)a->P + a->T;
    const float eps = (float)c->norm_eps;
    float *x = LAYER(a->resid, l, Ncap * C), *out = LAYER(a->resid, l + 1, Ncap * C);
    float *ln1 = LAYER(a->ln1, l, Ncap * C), *ln2 = LAYER(a->ln2, l, Ncap * C);
    float *qkv = LAYER(a->qkv, l, Ncap * QKV), *atty = LAYER(a->atty, l, Ncap * A);
    float *mid = LAYER(a->resid_mid, l, Ncap * C);
    float *probs = LAYER(a->probs, l, (size_t)a->B * c->num_heads * a->T * S);
    float *fc = LAYER(a->fc, l, Ncap * I), *act = LAYER(a->act, l, Ncap * I);
    float *ln1_rstd = LAYER(a->ln1_rstd, l, Ncap), *ln2_rstd = LAYER(a->ln2_rstd, l, Ncap);

    if (c->arch == ARCH_GPT2) {
        layernorm_forward(ln1, LAYER(a->ln1_mean, l, Ncap), ln1_rstd, x, bl->ln1_w->data, bl->ln1_b->data, N, C, eps);
        linear_forward(be, &bl->qkv, qkv, QKV, ln1, C, N, 0);
    } else {
        rmsnorm_forward(ln1, ln1_rstd, x, bl->ln1_w->data, N, C, eps);
        linear_forward(be, &bl->q, qkv, QKV, ln1, C, N, 0);
        linear_forward(be, &bl->k, qkv + A, QKV, ln1, C, N, 0);
        linear_forward(be, &bl->v, qkv + A + K, QKV, ln1, C, N, 0);
        rope_apply(qkv, QKV, 0, c->num_heads, c->head_dim, B, T, b->n_prefix, a->rope_cos, a->rope_sin, 0);
        rope_apply(qkv, QKV, A, c->num_kv_heads, c->head_dim, B, T, b->n_prefix, a->rope_cos, a->rope_sin, 0);
    }
    attn_shape s;
    model_attn_shape(m, a, &s);
    const float *pk = b->prefix ? b->prefix + (size_t)2 * l * K : NULL, *pv = pk ? pk + K : NULL;
    attention_forward(atty, probs, a->attn_work, qkv, pk, pv, &s);
    if (bl->attn_ad) {
        /* u = x + a + s f(a) (Houlsby; Bapna through the adapter's own LayerNorm) */
        bottleneck *ad = bl->attn_ad;
        linear_forward(be, &bl->o, ad->vbuf, C, atty, A, N, 0);
        for (size_t i = 0; i < (size_t)N * C; i++) mid[i] = x[i] + ad->vbuf[i];
        bottleneck_forward(be, ad, mid, N);
    } else {
        memcpy(mid, x, (size_t)N * C * sizeof(float));
        linear_forward(be, &bl->o, mid, C, atty, A, N, 1);
    }

    if (c->arch == ARCH_GPT2) {
        layernorm_forward(ln2, LAYER(a->ln2_mean, l, Ncap), ln2_rstd, mid, bl->ln2_w->data, bl->ln2_b->data, N, C, eps);
        linear_forward(be, &bl->fc, fc, I, ln2, C, N, 0);
        gelu_forward(act, fc, (size_t)N * I, c->act == ACT_GELU_TANH);
    } else {
        float *up = LAYER(a->up, l, Ncap * I);
        rmsnorm_forward(ln2, ln2_rstd, mid, bl->ln2_w->data, N, C, eps);
        linear_forward(be, &bl->fc, fc, I, ln2, C, N, 0);
        linear_forward(be, &bl->up, up, I, ln2, C, N, 0);
        swiglu_forward(act, fc, up, (size_t)N * I);
    }
    if (bl->mlp_ad) {
        /* y = u + m + s f(v), v = m (Houlsby), u + m (Pfeiffer) or u (parallel) */
        bottleneck *ad = bl->mlp_ad;
        linear_forward(be, &bl->down, ad->vbuf, C, act, I, N, 0);
        for (size_t i = 0; i < (size_t)N * C; i++) out[i] = mid[i] + ad->vbuf[i];
        if (ad->input == BN_IN_STREAM) memcpy(ad->vbuf, out, (size_t)N * C * sizeof(float));
        else if (ad->input == BN_IN_RESIDUAL) memcpy(ad->vbuf, mid, (size_t)N * C * sizeof(float));
        bottleneck_forward(be, ad, out, N);
    } else {
        memcpy(out, mid, (size_t)N * C * sizeof(float));
        linear_forward(be, &bl->down, out, C, act, I, N, 1);
    }
}

int model_forward(model *m, model_acts *a, const model_batch *b, double *nll_sum, int *count) {
    PEFT_TRY(check_batch(m, a, b));
    const model_config *c = &m->cfg;
    const int T = b->n_virtual + b->T, N = b->B * T, C = c->hidden_size, L = c->num_layers;
    a->cur_B = b->B;
    a->cur_T = T;
    a->cur_P = b->n_prefix;
    embed_forward(m, b, a->resid);
    if (m->in_ad) {
        memcpy(m->in_ad->vbuf, a->resid, (size_t)N * C * sizeof(float));
        bottleneck_forward(m->gemm, m->in_ad, a->resid, N);
    }
    for (int l = 0; l < L; l++) layer_forward(m, a, b, l);
    float *x = a->resid + (size_t)L * a->B * a->T * C;
    if (m->out_ad) {
        memcpy(m->out_ad->vbuf, x, (size_t)N * C * sizeof(float));
        bottleneck_forward(m->gemm, m->out_ad, x, N);
    }
    if (c->arch == ARCH_GPT2)
        layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, x, m->lnf_w->data, m->lnf_b->data, N, C,
                          (float)c->norm_eps);
    else rmsnorm_forward(a->lnf, a->lnf_rstd, x, m->lnf_w->data, N, C, (float)c->norm_eps);
    double sum = 0.0;
    int n = 0;
    const linear *head = &m->head;
    a->head_fused = a->fuse_head && b->targets && !head->hook && !head->weight->grad && !(head->bias && head->bias->grad);
    if (a->head_fused) {
        /* block by block: logits, loss, d loss / d logits, and back through the head into dhead */
        const int V = c->vocab_size;
        for (int r0 = 0; r0 < N; r0 += HEAD_ROWS) {
            const int rows = N - r0 < HEAD_ROWS ? N - r0 : HEAD_ROWS;
            int cnt;
            linear_forward(m->gemm, head, a->logits, V, a->lnf + (size_t)r0 * C, C, rows, 0);
            sum += xent_forward_backward(a->nll + r0, a->logits, b->targets + r0, rows, V, &cnt);
            n += cnt;
            linear_backward(m->gemm, head, a->dhead + (size_t)r0 * C, C, a->logits, V, a->lnf + (size_t)r0 * C, C, rows,
                            0);
        }
    } else {
        linear_forward(m->gemm, head, a->logits, c->vocab_size, a->lnf, C, N, 0);
        if (b->targets) sum = xent_forward(a->nll, a->logits, b->targets, N, c->vocab_size, &n);
    }
    if (nll_sum) *nll_sum = sum;
    if (count) *count = n;
    return PEFT_OK;
}

void model_layer_kv(const model *m, const model_acts *a, int l, const float **k, const float **v, int *ld) {
    const model_config *c = &m->cfg;
    const int A = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim, QKV = A + 2 * K;
    const float *qkv = LAYER(a->qkv, l, (size_t)a->B * a->T * QKV);
    *k = qkv + A;
    *v = qkv + A + K;
    *ld = QKV;
}
