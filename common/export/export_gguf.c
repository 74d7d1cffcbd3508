/* export_gguf.c - a LoRA run as the llama.cpp adapter convert_lora_to_gguf.py writes (FORMATS.md
 * §6): GGUF v3, little-endian, alignment 32 (the default; general.alignment is not written),
 * metadata general.architecture, general.type = "adapter", adapter.type = "lora",
 * adapter.lora.alpha (f32), then one F32 tensor pair per adapted module:
 * blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a, ne [in, r]
 * and .lora_b, ne [r, out] (ggml order, the reverse of torch's; the bytes are peft's row-major
 * matrices). lora_B of q_proj/k_proj gets the RoPE row permutation convert_hf_to_gguf applies to
 * the base weights: within each head, row i*2 + j takes row j*(head_dim/2) + i.
 *
 * llama.cpp scales by alpha / r; an rsLoRA run (alpha / sqrt(r)) is written with
 * alpha * sqrt(r). What llama.cpp cannot load is refused: DoRA, IA3 and every other method,
 * GPT-2 models, trained biases (lora_bias, --lora-bias), models other than llama/mistral.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "export/export.h"
#include "io/file.h"
#include "peft/peft_impl.h"

#define GGUF_ALIGN 32
#define GGUF_TYPE_F32 0
#define GGUF_KV_FLOAT32 6
#define GGUF_KV_STRING 8

typedef struct gbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} gbuf;

static void put(gbuf *b, const void *data, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

/* GGUF is little-endian; so is every machine this builds for (x86-64, aarch64). */
static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_kv_str(gbuf *b, const char *k, const char *v) {
    put_str(b, k);
    put_u32(b, GGUF_KV_STRING);
    put_str(b, v);
}
static void pad(gbuf *b) {
    static const uint8_t zeros[GGUF_ALIGN];
    put(b, zeros, (GGUF_ALIGN - b->n % GGUF_ALIGN) % GGUF_ALIGN);
}

/* "model.layers.3.self_attn.q_proj" -> "blk.3.attn_q" and the heads of its RoPE permutation
 * (0: none). */
static int gguf_name(const model_config *mc, const char *module, char *out, size_t cap, int *perm_heads) {
    static const struct { const char *hf, *gguf; } map[] = {
        {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},
    };
    int layer, used = 0;
    if (sscanf(module, "model.layers.%d.%n", &layer, &used) != 1 || !used)
        return err_set(PEFT_EUNSUPPORTED, "export: %s has no llama.cpp tensor name", module);
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(module + used, map[i].hf)) {
            snprintf(out, cap, "blk.%d.%s.weight", layer, map[i].gguf);
            *perm_heads = i == 0 ? mc->num_heads : (i == 1 ? mc->num_kv_heads : 0);
            return PEFT_OK;
        }
    return err_set(PEFT_EUNSUPPORTED, "export: %s has no llama.cpp tensor name", module);
}

/* convert_hf_to_gguf's LlamaModel.permute on the rows of B [out, r]:
 * reshape(heads, 2, out/heads/2, r).swapaxes(1, 2). */
static void permute_rows(float *dst, const float *src, int out, int r, int heads) {
    const int hd = out / heads, half = hd / 2;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + ((size_t)h * hd + (size_t)i * 2 + j) * r, src + ((size_t)h * hd + (size_t)j * half + i) * r,
                       (size_t)r * sizeof(float));
}

int export_gguf(peft_model *p, const char *path) {
    const peft_config *c = &p->cfg;
    const model_config *mc = &p->m->cfg;
    if (c->method != PEFT_LORA)
        return err_set(PEFT_EUNSUPPORTED, "export: llama.cpp adapters hold plain LoRA only; %s cannot be written as GGUF%s",
                       peft_method_name(c->method),
                       c->method == PEFT_DORA || c->method == PEFT_IA3 ? " (use --format peft or merged)" : "");
    if (mc->arch != ARCH_LLAMA || (strcmp(mc->model_type, "llama") && strcmp(mc->model_type, "mistral")))
        return err_set(PEFT_EUNSUPPORTED, "export: GGUF LoRA adapters are written for llama-family models (model_type "
                       "llama or mistral), not %s", mc->model_type);
    if (c->lora_b_bias || (c->lora_bias && strcmp(c->lora_bias, "none")))
        return err_set(PEFT_EUNSUPPORTED, "export: llama.cpp adapters cannot hold trained biases (lora_bias / --lora-bias)");
    const double alpha = c->use_rslora ? c->lora_alpha * sqrt((double)c->r) : c->lora_alpha;
    gbuf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 2 * (uint64_t)p->nhooks);
    put_u64(&b, 4);
    put_kv_str(&b, "general.architecture", "llama");
    put_kv_str(&b, "general.type", "adapter");
    put_kv_str(&b, "adapter.type", "lora");
    put_str(&b, "adapter.lora.alpha");
    put_u32(&b, GGUF_KV_FLOAT32);
    float af = (float)alpha;
    put(&b, &af, 4);
    /* tensor infos, then the data, each tensor at a multiple of 32 */
    uint64_t offset = 0;
    char name[160];
    int rc = PEFT_OK, heads;
    for (int i = 0; i < p->nhooks && !rc; i++) {
        const linear *l = p->hooked[i];
        if ((rc = gguf_name(mc, l->module, name, sizeof name - 8, &heads))) break;
        for (int ab = 0; ab < 2; ab++) {
            char tn[180];
            snprintf(tn, sizeof tn, "%s.lora_%c", name, ab ? 'b' : 'a');
            put_str(&b, tn);
            put_u32(&b, 2);
            put_u64(&b, ab ? (uint64_t)c->r : (uint64_t)l->in); /* ne[0] */
            put_u64(&b, ab ? (uint64_t)l->out : (uint64_t)c->r);
            put_u32(&b, GGUF_TYPE_F32);
            put_u64(&b, offset);
            uint64_t bytes = (uint64_t)c->r * (ab ? l->out : l->in) * 4;
            offset += (bytes + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
        }
    }
    pad(&b);
    float *perm = NULL;
    for (int i = 0; i < p->nhooks && !rc; i++) {
        const linear *l = p->hooked[i];
        const linear_hook *h = &p->hooks[i];
        gguf_name(mc, l->module, name, sizeof name, &heads);
        put(&b, h->A, (size_t)c->r * l->in * sizeof(float));
        pad(&b);
        const float *B = h->B;
        if (heads) {
            float *q = realloc(perm, (size_t)l->out * c->r * sizeof(float));
            if (!q) { rc = err_set(PEFT_ENOMEM, "out of memory"); break; }
            perm = q;
            permute_rows(perm, h->B, l->out, c->r, heads);
            B = perm;
        }
        put(&b, B, (size_t)l->out * c->r * sizeof(float));
        pad(&b);
    }
    free(perm);
    if (!rc && b.oom) rc = err_set(PEFT_ENOMEM, "out of memory building %s", path);
    if (!rc) rc = file_write_atomic(path, b.p, b.n);
    free(b.p);
    return rc;
}
