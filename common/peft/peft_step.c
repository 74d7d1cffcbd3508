/* peft_step.c - running a peft_model: scratch, the batch around model_forward/backward, the
 * prefix-projection MLP, accessors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "peft/peft_impl.h"

const tensor_table *peft_model_table(const peft_model *p) { return &p->table; }
float *peft_model_params(peft_model *p) { return p->params; }
float *peft_model_grads(peft_model *p) { return p->grads; }
const peft_config *peft_model_config(const peft_model *p) { return &p->cfg; }
void peft_model_set_training(peft_model *p, bool training) { p->training = training; }
rng_state *peft_model_dropout_rng(peft_model *p) { return &p->dropout_rng; }
int peft_model_positions(const peft_model *p, int T) { return p->nv + T; }
int peft_model_prefix_len(const peft_model *p) { return p->np; }

void peft_model_zero_grad(peft_model *p) { memset(p->grads, 0, p->table.total * sizeof(float)); }

void peft_model_counts(const peft_model *p, long long *trainable, long long *total) {
    *trainable = (long long)tt_numel(&p->table);
    /* peft counts base + adapter parameters; full fine-tuning trains the base itself; the prefix
     * MLP counts, as in peft during training */
    long long redirected = 0;
    for (int i = 0; i < p->nred; i++) redirected += (long long)p->redirected[i]->numel;
    *total = p->base_params + *trainable - redirected;
}

int peft_model_reserve(peft_model *p, int B, int T) {
    const int S = p->nv + T, N = B * S;
    if (B <= p->cap_B && T <= p->cap_T) return PEFT_OK;
    for (int i = 0; i < p->nhooks; i++) PEFT_TRY(linear_hook_reserve(&p->hooks[i], p->hooked[i], N));
    for (int i = 0; i < p->nadapters; i++) PEFT_TRY(bottleneck_reserve(&p->adapters[i], N));
    free(p->targets_ext);
    p->targets_ext = malloc((size_t)N * sizeof *p->targets_ext);
    if (!p->targets_ext) return err_set(PEFT_ENOMEM, "out of memory");
    if (p->emb && !p->prefix_out) {
        const model_config *mc = &p->m->cfg;
        const size_t row = (size_t)mc->num_layers * 2 * mc->num_kv_heads * mc->head_dim;
        p->mlp_h = malloc((size_t)p->np * p->enc_hidden * sizeof(float));
        p->mlp_dh = malloc((size_t)p->np * p->enc_hidden * sizeof(float));
        p->prefix_out = malloc((size_t)p->np * row * sizeof(float));
        p->dprefix_out = malloc((size_t)p->np * row * sizeof(float));
        if (!p->mlp_h || !p->mlp_dh || !p->prefix_out || !p->dprefix_out) return err_set(PEFT_ENOMEM, "out of memory");
        p->prefix = p->prefix_out;
        p->dprefix = p->dprefix_out;
    }
    p->cap_B = B;
    p->cap_T = T;
    return PEFT_OK;
}

/* prefix = tanh(emb W0^T + b0) W2^T + b2 */
static void prefix_mlp_forward(peft_model *p) {
    const gemm_backend be = p->m->gemm;
    const int np = p->np, D = p->token_dim, E = p->enc_hidden;
    const model_config *mc = &p->m->cfg;
    const int row = mc->num_layers * 2 * mc->num_kv_heads * mc->head_dim;
    gemm_f32(be, 0, 1, np, E, D, 1.0f, p->emb, D, p->w0, D, 0.0f, p->mlp_h, E);
    for (int i = 0; i < np; i++)
        for (int j = 0; j < E; j++) p->mlp_h[(size_t)i * E + j] = tanhf(p->mlp_h[(size_t)i * E + j] + p->b0[j]);
    gemm_f32(be, 0, 1, np, row, E, 1.0f, p->mlp_h, E, p->w2, E, 0.0f, p->prefix_out, row);
    for (int i = 0; i < np; i++)
        for (int j = 0; j < row; j++) p->prefix_out[(size_t)i * row + j] += p->b2[j];
}

static void prefix_mlp_backward(peft_model *p) {
    const gemm_backend be = p->m->gemm;
    const int np = p->np, D = p->token_dim, E = p->enc_hidden;
    const model_config *mc = &p->m->cfg;
    const int row = mc->num_layers * 2 * mc->num_kv_heads * mc->head_dim;
    const float *g = p->dprefix_out;
    gemm_f32(be, 1, 0, row, E, np, 1.0f, g, row, p->mlp_h, E, 1.0f, p->dw2, E);
    for (int j = 0; j < row; j++)
        for (int i = 0; i < np; i++) p->db2[j] += g[(size_t)i * row + j];
    gemm_f32(be, 0, 0, np, E, row, 1.0f, g, row, p->w2, E, 0.0f, p->mlp_dh, E);
    for (size_t i = 0; i < (size_t)np * E; i++) {
        float h = p->mlp_h[i];
        p->mlp_dh[i] *= 1.0f - h * h;
    }
    gemm_f32(be, 1, 0, E, D, np, 1.0f, p->mlp_dh, E, p->emb, D, 1.0f, p->dw0, D);
    for (int j = 0; j < E; j++)
        for (int i = 0; i < np; i++) p->db0[j] += p->mlp_dh[(size_t)i * E + j];
    gemm_f32(be, 0, 0, np, D, E, 1.0f, p->mlp_dh, E, p->w0, D, 1.0f, p->demb, D);
}

const float *peft_model_prefix_output(peft_model *p) {
    if (!p->emb) return NULL;
    if (peft_model_reserve(p, 1, 1)) return NULL;
    prefix_mlp_forward(p);
    return p->prefix_out;
}

int peft_model_forward(peft_model *p, model_acts *a, const int *tokens, const int *targets, int B, int T,
                       double *nll, int *count) {
    if (B > p->cap_B || T > p->cap_T)
        return err_set(PEFT_EUSAGE, "batch %d x %d exceeds the reserved %d x %d", B, T, p->cap_B, p->cap_T);
    const int S = p->nv + T;
    const int *tg = targets;
    if (p->nv) {
        /* virtual positions predict nothing: not even the first real token (the golden peft files) */
        for (int b = 0; b < B; b++) {
            int *row = p->targets_ext + (size_t)b * S;
            for (int t = 0; t < p->nv; t++) row[t] = -1;
            memcpy(row + p->nv, targets + (size_t)b * T, (size_t)T * sizeof(int));
        }
        tg = p->targets_ext;
    }
    if (p->emb) prefix_mlp_forward(p);
    p->batch = (model_batch){.B = B, .T = T, .tokens = tokens, .targets = tg, .virtual_embeds = p->virt,
                             .n_virtual = p->nv, .prefix = p->prefix, .n_prefix = p->np};
    return model_forward(p->m, a, &p->batch, nll, count);
}

void peft_model_backward(peft_model *p, model_acts *a, float loss_scale) {
    if (p->emb) memset(p->dprefix_out, 0, (size_t)p->np * p->m->cfg.num_layers * 2 * p->m->cfg.num_kv_heads *
                                              p->m->cfg.head_dim * sizeof(float));
    model_backward(p->m, a, &p->batch, loss_scale, p->dvirt, p->dprefix);
    if (p->emb) prefix_mlp_backward(p);
}

const float *peft_model_virtual(peft_model *p, int *n) {
    *n = p->nv;
    return p->virt;
}

const float *peft_model_prefix(peft_model *p, int *n) {
    *n = p->np;
    if (p->emb) return peft_model_prefix_output(p);
    return p->prefix;
}
