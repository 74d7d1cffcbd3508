#include "model/acts.h"

#include <stdlib.h>
#include <omp.h>
#include <string.h>

#include "error.h"
#include "kernels/rope.h"

int model_acts_init(const model *m, int B, int T, int P, model_acts **out) {
    *out = NULL;
    const model_config *c = &m->cfg;
    if (B <= 0 || T <= 0 || P < 0) return err_set(PEFT_EUSAGE, "batch %d x %d positions (+%d prefix) is not a valid shape", B, T, P);
    const size_t L = c->num_layers, N = (size_t)B * T, C = c->hidden_size, I = c->intermediate_size;
    const size_t A = (size_t)c->num_heads * c->head_dim, QKV = A + 2 * (size_t)c->num_kv_heads * c->head_dim;
    const size_t S = (size_t)P + T, V = c->vocab_size, half = c->head_dim / 2;
    const int llama = c->arch == ARCH_LLAMA;
    model_acts *a = calloc(1, sizeof *a);
    if (!a) return err_set(PEFT_ENOMEM, "out of memory allocating activations");
    a->B = B;
    a->T = T;
    a->P = P;
    a->attn_threads = omp_get_max_threads();
    const attn_shape as = {.B = B, .T = T, .H = c->num_heads, .KV = c->num_kv_heads, .hd = c->head_dim, .P = P,
                           .threads = a->attn_threads};
    struct { float **ptr; size_t n; } plan[] = {
        {&a->resid, (L + 1) * N * C}, {&a->ln1, L * N * C}, {&a->ln1_mean, llama ? 0 : L * N},
        {&a->ln1_rstd, L * N}, {&a->qkv, L * N * QKV}, {&a->probs, L * B * c->num_heads * (size_t)T * S},
        {&a->atty, L * N * A}, {&a->resid_mid, L * N * C}, {&a->ln2, L * N * C},
        {&a->ln2_mean, llama ? 0 : L * N}, {&a->ln2_rstd, L * N}, {&a->fc, L * N * I},
        {&a->up, llama ? L * N * I : 0}, {&a->act, L * N * I}, {&a->lnf, N * C},
        {&a->lnf_mean, llama ? 0 : N}, {&a->lnf_rstd, N}, {&a->logits, N * V}, {&a->dhead, N * C}, {&a->nll, N},
        {&a->rope_cos, llama ? S * half : 0}, {&a->rope_sin, llama ? S * half : 0},
        {&a->dres, N * C}, {&a->dln, N * C}, {&a->dqkv, N * QKV}, {&a->datty, N * A}, {&a->dfc, N * I},
        {&a->dup, llama ? N * I : 0}, {&a->dact, N * I}, {&a->attn_work, attention_work_floats(&as)},
        {&a->dembed, N * C},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) total += (plan[i].n + 15) & ~(size_t)15;
    a->bytes = total * sizeof(float);
    a->arena = aligned_alloc(64, a->bytes);
    if (!a->arena) {
        free(a);
        return err_set(PEFT_ENOMEM, "out of memory allocating %.1f MiB of activations for batch %d x %d",
                       total * 4.0 / (1 << 20), B, T);
    }
    float *p = a->arena;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        *plan[i].ptr = plan[i].n ? p : NULL;
        p += (plan[i].n + 15) & ~(size_t)15;
    }
    if (llama) rope_table_init(a->rope_cos, a->rope_sin, (int)S, c);
    *out = a;
    return PEFT_OK;
}

void model_acts_free(model_acts *a) {
    if (!a) return;
    free(a->arena);
    free(a);
}

size_t model_acts_bytes(const model_acts *a) { return a->bytes; }

const float *model_logits(const model_acts *a) { return a->head_fused ? NULL : a->logits; }

void model_acts_set_fused_head(model_acts *a, bool on) { a->fuse_head = on; }
const float *model_nll(const model_acts *a) { return a->nll; }
const float *model_dembed(const model_acts *a) { return a->dembed; }
