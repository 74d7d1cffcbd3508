#include "peft/merge.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "peft/peft_impl.h"

/* W[out, in] element (j, i) in the layer's storage order. */
static float *weight_at(const linear *l, int j, int i) {
    return l->in_major ? &l->weight->data[(size_t)i * l->out + j] : &l->weight->data[(size_t)j * l->in + i];
}

static void merge_one(gemm_backend be, linear *l, linear_hook *h) {
    const int in = l->in, out = l->out;
    switch (h->kind) {
    case HOOK_LORA:
    case HOOK_DORA: {
        linear_hook_dora_norms(be, l, h); /* BA and the row norms of W + s BA */
        for (int j = 0; j < out; j++) {
            float f = h->kind == HOOK_DORA ? h->mag[j] / h->norm[j] : 1.0f;
            for (int i = 0; i < in; i++) {
                float *w = weight_at(l, j, i);
                *w = f * (*w + h->scaling * h->BA[(size_t)j * in + i]);
            }
        }
        if (h->B_bias && l->bias)
            for (int j = 0; j < out; j++) l->bias->data[j] += h->scaling * h->B_bias[j];
        return;
    }
    case HOOK_IA3_OUT:
        for (int j = 0; j < out; j++) {
            for (int i = 0; i < in; i++) *weight_at(l, j, i) *= h->l[j];
            if (l->bias) l->bias->data[j] *= h->l[j];
        }
        return;
    case HOOK_IA3_IN:
        for (int j = 0; j < out; j++)
            for (int i = 0; i < in; i++) *weight_at(l, j, i) *= h->l[i];
        return;
    }
}

int peft_model_merge(peft_model *p) {
    const peft_method m = p->cfg.method;
    if (m != PEFT_FULL && m != PEFT_LORA && m != PEFT_DORA && m != PEFT_IA3)
        return err_set(PEFT_EUNSUPPORTED, "method %s cannot be merged into the weights (only full, lora, dora and ia3)",
                       peft_method_name(m));
    if (p->cfg.lora_b_bias)
        for (int i = 0; i < p->nhooks; i++)
            if (!p->hooked[i]->bias)
                return err_set(PEFT_EUNSUPPORTED, "%s has no bias to fold lora_B.bias into", p->hooked[i]->module);
    for (int i = 0; i < p->nhooks; i++)
        if (p->hooked[i]->weight->q)
            return err_set(PEFT_EUNSUPPORTED, "%s is stored compressed (--quantize/--bf16); merge into an unquantised base",
                           p->hooked[i]->module);
    for (int i = 0; i < p->nhooks; i++) {
        linear_hook *h = &p->hooks[i];
        if (h->kind == HOOK_LORA && !h->BA) { /* LoRA never needed B·A while training */
            h->BA = malloc((size_t)p->hooked[i]->out * p->hooked[i]->in * sizeof(float));
            h->norm = malloc((size_t)p->hooked[i]->out * sizeof(float));
            if (!h->BA || !h->norm) return err_set(PEFT_ENOMEM, "out of memory merging %s", p->hooked[i]->module);
        }
        if (h->kind == HOOK_DORA) PEFT_TRY(linear_hook_reserve(h, p->hooked[i], 1));
        merge_one(p->m->gemm, p->hooked[i], h);
        p->hooked[i]->hook = NULL;
    }
    return PEFT_OK;
}
