/* model.c - the parameter table: building it from a config, loading, initialising, saving. The
 * forward and backward passes are in forward.c and backward.c. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "rng.h"

typedef struct table_builder {
    model *m;
    int cap;
} table_builder;

static param *add_param(table_builder *tb, const char *name, int ndim, int64_t d0, int64_t d1) {
    model *m = tb->m;
    PEFT_ASSERT(m->nparams < tb->cap);
    param *p = &m->params[m->nparams++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = ndim == 2 ? d1 : 1;
    p->numel = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    return p;
}

/* A linear layer's params, named "<module>.weight" and "<module>.bias". */
static void add_linear(table_builder *tb, linear *l, const char *module, int in, int out, int in_major,
                       int has_bias) {
    char name[160];
    snprintf(l->module, sizeof l->module, "%s", module);
    l->in = in;
    l->out = out;
    l->in_major = in_major;
    snprintf(name, sizeof name, "%s.weight", module);
    l->weight = in_major ? add_param(tb, name, 2, in, out) : add_param(tb, name, 2, out, in);
    l->bias = NULL;
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", module);
        l->bias = add_param(tb, name, 1, out, 0);
    }
}

static void build_gpt2(table_builder *tb) {
    model *m = tb->m;
    const model_config *c = &m->cfg;
    const int C = c->hidden_size, I = c->intermediate_size;
    char name[160];
    m->wte = add_param(tb, "transformer.wte.weight", 2, c->vocab_size, C);
    m->wpe = add_param(tb, "transformer.wpe.weight", 2, c->max_positions, C);
    for (int l = 0; l < c->num_layers; l++) {
        block *bl = &m->blocks[l];
#define P1(field, suffix)                                                   \
    snprintf(name, sizeof name, "transformer.h.%d.%s", l, suffix);          \
    bl->field = add_param(tb, name, 1, C, 0)
#define LIN(field, suffix, in, out)                                         \
    snprintf(name, sizeof name, "transformer.h.%d.%s", l, suffix);          \
    add_linear(tb, &bl->field, name, in, out, 1, 1)
        P1(ln1_w, "ln_1.weight");
        P1(ln1_b, "ln_1.bias");
        LIN(qkv, "attn.c_attn", C, 3 * C);
        LIN(o, "attn.c_proj", C, C);
        P1(ln2_w, "ln_2.weight");
        P1(ln2_b, "ln_2.bias");
        LIN(fc, "mlp.c_fc", C, I);
        LIN(down, "mlp.c_proj", I, C);
#undef P1
#undef LIN
    }
    m->lnf_w = add_param(tb, "transformer.ln_f.weight", 1, C, 0);
    m->lnf_b = add_param(tb, "transformer.ln_f.bias", 1, C, 0);
    snprintf(m->head.module, sizeof m->head.module, "lm_head");
    m->head.in = C;
    m->head.out = c->vocab_size;
    m->head.weight = m->wte;
}

static void build_llama(table_builder *tb) {
    model *m = tb->m;
    const model_config *c = &m->cfg;
    const int C = c->hidden_size, I = c->intermediate_size;
    const int Q = c->num_heads * c->head_dim, K = c->num_kv_heads * c->head_dim;
    char name[160];
    m->wte = add_param(tb, "model.embed_tokens.weight", 2, c->vocab_size, C);
    for (int l = 0; l < c->num_layers; l++) {
        block *bl = &m->blocks[l];
#define LIN(field, suffix, in, out, bias)                                   \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);           \
    add_linear(tb, &bl->field, name, in, out, 0, bias)
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        bl->ln1_w = add_param(tb, name, 1, C, 0);
        LIN(q, "self_attn.q_proj", C, Q, c->qkv_bias);
        LIN(k, "self_attn.k_proj", C, K, c->qkv_bias);
        LIN(v, "self_attn.v_proj", C, K, c->qkv_bias);
        LIN(o, "self_attn.o_proj", Q, C, c->o_bias);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        bl->ln2_w = add_param(tb, name, 1, C, 0);
        LIN(fc, "mlp.gate_proj", C, I, c->mlp_bias);
        LIN(up, "mlp.up_proj", C, I, c->mlp_bias);
        LIN(down, "mlp.down_proj", I, C, c->mlp_bias);
#undef LIN
    }
    m->lnf_w = add_param(tb, "model.norm.weight", 1, C, 0);
    if (c->tie_word_embeddings) {
        snprintf(m->head.module, sizeof m->head.module, "lm_head");
        m->head.in = C;
        m->head.out = c->vocab_size;
        m->head.weight = m->wte;
    } else {
        add_linear(tb, &m->head, "lm_head", C, c->vocab_size, 0, 0);
    }
}

/* Builds the parameter table for m->cfg and allocates the weight arena (uninitialised). */
static int model_build(const model_config *cfg, gemm_backend be, model **out) {
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m) return err_set(PEFT_ENOMEM, "out of memory allocating the model");
    m->cfg = *cfg;
    m->gemm = be;
    int cap = 16 + 20 * cfg->num_layers;
    m->params = calloc((size_t)cap, sizeof *m->params);
    m->blocks = calloc((size_t)cfg->num_layers, sizeof *m->blocks);
    if (!m->params || !m->blocks) goto out_nomem;
    table_builder tb = {m, cap};
    if (cfg->arch == ARCH_GPT2) build_gpt2(&tb);
    else build_llama(&tb);
    for (int i = 0; i < m->nparams; i++) m->nweights += m->params[i].numel;
    m->weights = malloc(m->nweights * sizeof(float));
    if (!m->weights) goto out_nomem;
    float *p = m->weights;
    for (int i = 0; i < m->nparams; i++) {
        m->params[i].data = p;
        p += m->params[i].numel;
    }
    *out = m;
    return PEFT_OK;
out_nomem:
    model_free(m);
    return err_set(PEFT_ENOMEM, "out of memory allocating a model of %lld parameters", config_num_params(cfg));
}

void model_free(model *m) {
    if (!m) return;
    free(m->weights);
    free(m->grads);
    free(m->params);
    free(m->blocks);
    free(m);
}

param *model_find_param(const model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

/* Original OpenAI GPT-2 checkpoints name tensors without the "transformer." prefix. */
static const st_tensor *find_tensor(const st_model *st, const model *m, const char *name) {
    const st_tensor *t = st_model_find(st, name);
    if (!t && m->cfg.arch == ARCH_GPT2 && !strncmp(name, "transformer.", 12)) t = st_model_find(st, name + 12);
    return t;
}

static int load_param(const st_model *st, const model *m, param *p, const char *dir) {
    const st_tensor *t = find_tensor(st, m, p->name);
    if (!t) return err_set(PEFT_EFORMAT, "%s: missing tensor '%s' (required by config.json)", dir, p->name);
    const char *file = st_model_file_of(st, t);
    int ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] && (p->ndim == 1 || t->shape[1] == p->shape[1]);
    if (!ok) {
        char got[96] = "", want[64];
        for (int i = 0, n = 0; i < t->ndim && n < (int)sizeof got - 24; i++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (p->ndim == 1) snprintf(want, sizeof want, "%lld", (long long)p->shape[0]);
        else snprintf(want, sizeof want, "%lld, %lld", (long long)p->shape[0], (long long)p->shape[1]);
        return err_set(PEFT_EFORMAT, "%s: tensor '%s' has shape [%s], config.json implies [%s]", file, p->name, got,
                       want);
    }
    int rc = st_read_f32(t, p->data, p->numel);
    if (rc == PEFT_EUNSUPPORTED)
        return err_set(PEFT_EUNSUPPORTED, "%s: tensor '%s' has dtype %s; model weights must be F32, F16 or BF16", file,
                       p->name, st_dtype_name(t->dtype));
    return rc;
}

int model_load(const char *dir, gemm_backend be, model **out) {
    *out = NULL;
    model_config cfg;
    PEFT_TRY(config_load(dir, &cfg));
    st_model *st;
    PEFT_TRY(st_model_open(dir, &st));
    model *m;
    int rc = model_build(&cfg, be, &m);
    if (rc) goto out_close;
    for (int i = 0; i < m->nparams && rc == PEFT_OK; i++) rc = load_param(st, m, &m->params[i], dir);
    if (rc) {
        model_free(m);
        goto out_close;
    }
    *out = m;
out_close:
    st_model_close(st);
    return rc;
}

int model_init_random(const model_config *cfg, uint64_t seed, gemm_backend be, model **out) {
    model *m;
    PEFT_TRY(model_build(cfg, be, &m));
    rng_state r;
    rng_seed(&r, seed);
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * cfg->num_layers);
    for (int i = 0; i < m->nparams; i++) {
        param *p = &m->params[i];
        const char *dot = strrchr(p->name, '.');
        int is_norm = strstr(p->name, "ln_") || strstr(p->name, "layernorm") || !strcmp(p->name, "model.norm.weight");
        if (p->ndim == 1) {
            float v = (is_norm && !strcmp(dot, ".weight")) ? 1.0f : 0.0f;
            for (size_t j = 0; j < p->numel; j++) p->data[j] = v;
            continue;
        }
        /* GPT-2 scales its residual projections' init by 1/sqrt(2 * n_layer). */
        float s = (cfg->arch == ARCH_GPT2 && strstr(p->name, "c_proj.weight")) ? proj_std : std;
        for (size_t j = 0; j < p->numel; j++) p->data[j] = s * rng_normal(&r);
    }
    *out = m;
    return PEFT_OK;
}

int model_save(const model *m, const char *dir) {
    PEFT_TRY(file_mkdirs(dir));
    PEFT_TRY(config_save(&m->cfg, dir));
    st_writer *w;
    PEFT_TRY(st_writer_init(&w));
    int rc = st_writer_set_metadata(w, "format", "pt");
    for (int i = 0; i < m->nparams && rc == PEFT_OK; i++) {
        const param *p = &m->params[i];
        rc = st_writer_add(w, p->name, ST_F32, p->ndim, p->shape, p->data);
    }
    char path[4096];
    if (rc == PEFT_OK) rc = file_join(path, sizeof path, dir, "model.safetensors");
    if (rc == PEFT_OK) rc = st_writer_save(w, path);
    st_writer_free(w);
    return rc;
}

int model_set_trainable(model *m, bool (*want)(const param *p, void *ctx), void *ctx) {
    free(m->grads);
    m->grads = NULL;
    m->ngrads = 0;
    for (int i = 0; i < m->nparams; i++) {
        m->params[i].grad = NULL;
        if (!want || want(&m->params[i], ctx)) m->ngrads += m->params[i].numel;
    }
    if (m->ngrads == 0) return PEFT_OK;
    m->grads = calloc(m->ngrads, sizeof(float));
    if (!m->grads) return err_set(PEFT_ENOMEM, "out of memory allocating %zu gradients", m->ngrads);
    float *g = m->grads;
    for (int i = 0; i < m->nparams; i++) {
        if (want && !want(&m->params[i], ctx)) continue;
        m->params[i].grad = g;
        g += m->params[i].numel;
    }
    return PEFT_OK;
}

void model_zero_grad(model *m) {
    if (m->grads) memset(m->grads, 0, m->ngrads * sizeof(float));
}

double model_flops_per_step(const model_config *c, long long ntokens, int seq_len, bool weight_grads) {
    const double C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    const double Q = (double)c->num_heads * c->head_dim, K = (double)c->num_kv_heads * c->head_dim;
    double per_layer = C * (Q + 2 * K) + Q * C + (c->arch == ARCH_GPT2 ? 2 : 3) * C * I;
    double matmul = c->num_layers * per_layer + C * V; /* multiply-adds per token */
    /* causal attention: QK^T and PV, each hd*S/2 multiply-adds per head per token on average */
    double attn = (double)c->num_layers * c->num_heads * c->head_dim * seq_len;
    double fwd = 2.0 * ntokens * (matmul + attn);
    double bwd = 2.0 * ntokens * (matmul * (weight_grads ? 2.0 : 1.0) + 2.0 * attn);
    return fwd + bwd;
}
