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
#include "quant/bnb.h"
#include "quant/qweight.h"
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

/* The linear layers of a block that exist in this architecture, into out[8]; returns the count. */
static int block_linears(block *bl, linear **out) {
    linear *all[] = {&bl->qkv, &bl->q, &bl->k, &bl->v, &bl->o, &bl->fc, &bl->up, &bl->down};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->weight) out[n++] = all[i];
    return n;
}

/* Chooses which block weights are stored compressed (opts, or a bnb-4bit quant state in st) and
 * gives them the [out, in] layout; refuses quant states anywhere else. */
static int mark_compressed(model *m, const st_model *st, const char *dir) {
    if (!m->qweights) m->qweights = calloc((size_t)8 * (size_t)m->cfg.num_layers + 1, sizeof *m->qweights);
    if (!m->qweights) return err_set(PEFT_ENOMEM, "out of memory allocating the model");
    const bool want = m->opts.quantize == MODEL_QUANT_NF4 || m->opts.bf16;
    for (int b = 0; b < m->cfg.num_layers; b++) {
        linear *ls[8];
        int n = block_linears(&m->blocks[b], ls);
        for (int i = 0; i < n; i++) {
            linear *l = ls[i];
            if (!want && !(st && bnb_has_state(st, l->weight->name))) continue;
            param *p = l->weight;
            p->q = &m->qweights[m->nqweights++];
            p->shape[0] = l->out;
            p->shape[1] = l->in;
            l->in_major = 0;
        }
    }
    if (!st) return PEFT_OK;
    for (int i = 0; i < m->nparams; i++)
        if (!m->params[i].q && bnb_has_state(st, m->params[i].name))
            return err_set(PEFT_EUNSUPPORTED, "%s: '%s' is quantised; peft keeps embeddings, norms and lm_head unquantised",
                           dir, m->params[i].name);
    return PEFT_OK;
}

/* Builds the parameter table for cfg and allocates the weight arena (uninitialised) for every
 * param not stored compressed. st: the checkpoint being loaded (bnb-4bit states), or NULL. */
static int model_build(const model_config *cfg, gemm_backend be, const model_opts *opts, const st_model *st,
                       const char *dir, model **out) {
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m) return err_set(PEFT_ENOMEM, "out of memory allocating the model");
    m->cfg = *cfg;
    m->gemm = be;
    if (opts) m->opts = *opts;
    int rc;
    int cap = 16 + 20 * cfg->num_layers;
    m->params = calloc((size_t)cap, sizeof *m->params);
    m->blocks = calloc((size_t)cfg->num_layers, sizeof *m->blocks);
    if (!m->params || !m->blocks) goto out_nomem;
    table_builder tb = {m, cap};
    if (cfg->arch == ARCH_GPT2) build_gpt2(&tb);
    else build_llama(&tb);
    if ((rc = mark_compressed(m, st, dir))) goto out_fail;
    for (int i = 0; i < m->nparams; i++)
        if (!m->params[i].q) m->nweights += m->params[i].numel;
    m->weights = malloc((m->nweights ? m->nweights : 1) * sizeof(float));
    if (!m->weights) goto out_nomem;
    float *p = m->weights;
    for (int i = 0; i < m->nparams; i++) {
        if (m->params[i].q) continue;
        m->params[i].data = p;
        p += m->params[i].numel;
    }
    *out = m;
    return PEFT_OK;
out_nomem:
    rc = err_set(PEFT_ENOMEM, "out of memory allocating a model of %lld parameters", config_num_params(cfg));
out_fail:
    model_free(m);
    return rc;
}

/* Compresses a block weight given in its Hugging Face layout (GPT-2's Conv1D: [in, out]);
 * tmp holds p->numel floats for the transposition. */
static int compress_param(const model *m, param *p, const float *w, float *tmp) {
    const int out = (int)p->shape[0], in = (int)p->shape[1];
    if (m->cfg.arch == ARCH_GPT2) {
#pragma omp parallel for if (p->numel > 65536)
        for (int j = 0; j < out; j++)
            for (int i = 0; i < in; i++) tmp[(size_t)j * in + i] = w[(size_t)i * out + j];
        w = tmp;
    }
    if (m->opts.quantize == MODEL_QUANT_NF4) return qweight_init_nf4(p->q, w, out, in, m->opts.bf16);
    return qweight_init_bf16(p->q, w, out, in);
}

/* Two scratch buffers of the largest compressed param, for loading and initialising. */
static int compress_scratch(const model *m, float **a, float **b) {
    size_t n = 1;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].q && m->params[i].numel > n) n = m->params[i].numel;
    *a = malloc(n * sizeof(float));
    *b = malloc(n * sizeof(float));
    if (*a && *b) return PEFT_OK;
    free(*a);
    free(*b);
    *a = *b = NULL;
    return err_set(PEFT_ENOMEM, "out of memory for a %zu-value weight while compressing", n);
}

int model_compress(model *m, const model_opts *opts) {
    if (m->nqweights || m->grads)
        return err_set(PEFT_EUSAGE, "model_compress: the model is already compressed or has gradients");
    if (opts->quantize != MODEL_QUANT_NF4 && !opts->bf16) return PEFT_OK;
    /* which params: mark on a copy of the options, then move data across */
    float *old = m->weights;
    float **src = malloc((size_t)m->nparams * sizeof *src);
    if (!src) return err_set(PEFT_ENOMEM, "out of memory compressing the model");
    for (int i = 0; i < m->nparams; i++) src[i] = m->params[i].data;
    m->opts = *opts;
    int rc = mark_compressed(m, NULL, NULL);
    float *w = NULL, *tmp = NULL;
    if (rc == PEFT_OK) rc = compress_scratch(m, &w, &tmp);
    size_t n = 0;
    for (int i = 0; i < m->nparams && rc == PEFT_OK; i++) {
        param *p = &m->params[i];
        if (p->q) {
            memcpy(w, src[i], p->numel * sizeof(float));
            rc = compress_param(m, p, w, tmp);
            p->data = NULL;
        } else {
            n += p->numel;
        }
    }
    float *arena = rc == PEFT_OK ? malloc((n ? n : 1) * sizeof(float)) : NULL;
    if (rc == PEFT_OK && !arena) rc = err_set(PEFT_ENOMEM, "out of memory compressing the model");
    if (rc == PEFT_OK) {
        float *p = arena;
        for (int i = 0; i < m->nparams; i++) {
            if (m->params[i].q) continue;
            memcpy(p, src[i], m->params[i].numel * sizeof(float));
            m->params[i].data = p;
            p += m->params[i].numel;
        }
        m->weights = arena;
        m->nweights = n;
        free(old);
    }
    free(w);
    free(tmp);
    free(src);
    return rc; /* on failure the model is unusable: the caller frees it */
}

void model_storage_stats(const model *m, model_storage *s) {
    memset(s, 0, sizeof *s);
    s->f32_params = m->nweights;
    s->f32_bytes = m->nweights * sizeof(float);
    for (int i = 0; i < m->nqweights; i++) {
        const qweight *q = &m->qweights[i];
        s->compressed_params += (size_t)q->rows * (size_t)q->cols;
        s->compressed_bytes += qweight_bytes(q);
    }
}

void model_free(model *m) {
    if (!m) return;
    for (int i = 0; i < m->nqweights; i++) qweight_free(&m->qweights[i]);
    free(m->qweights);
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

/* Reads p's tensor as fp32 into dst (p->data, or a scratch for a param to compress). */
static int load_param(const st_model *st, const model *m, param *p, const char *dir, float *dst) {
    const st_tensor *t = find_tensor(st, m, p->name);
    if (!t) return err_set(PEFT_EFORMAT, "%s: missing tensor '%s' (required by config.json)", dir, p->name);
    const char *file = st_model_file_of(st, t);
    /* a compressed param's shape is [out, in]; the checkpoint holds Hugging Face's layout */
    int64_t s0 = p->shape[0], s1 = p->shape[1];
    if (p->q && m->cfg.arch == ARCH_GPT2) {
        s0 = p->shape[1];
        s1 = p->shape[0];
    }
    int ok = t->ndim == p->ndim && t->shape[0] == s0 && (p->ndim == 1 || t->shape[1] == s1);
    if (!ok) {
        char got[96] = "", want[64];
        for (int i = 0, n = 0; i < t->ndim && n < (int)sizeof got - 24; i++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (p->ndim == 1) snprintf(want, sizeof want, "%lld", (long long)s0);
        else snprintf(want, sizeof want, "%lld, %lld", (long long)s0, (long long)s1);
        return err_set(PEFT_EFORMAT, "%s: tensor '%s' has shape [%s], config.json implies [%s]", file, p->name, got,
                       want);
    }
    int rc = st_read_f32(t, dst, p->numel);
    if (rc == PEFT_EUNSUPPORTED)
        return err_set(PEFT_EUNSUPPORTED, "%s: tensor '%s' has dtype %s; model weights must be F32, F16 or BF16", file,
                       p->name, st_dtype_name(t->dtype));
    return rc;
}

int model_load(const char *dir, gemm_backend be, model **out) { return model_load_with(dir, be, NULL, out); }

int model_load_with(const char *dir, gemm_backend be, const model_opts *opts, model **out) {
    *out = NULL;
    model_config cfg;
    PEFT_TRY(config_load(dir, &cfg));
    st_model *st;
    PEFT_TRY(st_model_open(dir, &st));
    model *m = NULL;
    float *w = NULL, *tmp = NULL;
    int rc = model_build(&cfg, be, opts, st, dir, &m);
    if (rc) goto out_close;
    if (m->nqweights && (rc = compress_scratch(m, &w, &tmp))) goto out_close;
    for (int i = 0; i < m->nparams && rc == PEFT_OK; i++) {
        param *p = &m->params[i];
        if (!p->q) rc = load_param(st, m, p, dir, p->data);
        else if (bnb_has_state(st, p->name)) rc = bnb_load_weight(st, p->name, (int)p->shape[0], (int)p->shape[1], m->opts.bf16, p->q);
        else if ((rc = load_param(st, m, p, dir, w)) == PEFT_OK) rc = compress_param(m, p, w, tmp);
    }
    if (rc == PEFT_OK) *out = m;
out_close:
    if (rc) model_free(m);
    free(w);
    free(tmp);
    st_model_close(st);
    return rc;
}

int model_init_random(const model_config *cfg, uint64_t seed, gemm_backend be, model **out) {
    return model_init_random_with(cfg, seed, be, NULL, out);
}

int model_init_random_with(const model_config *cfg, uint64_t seed, gemm_backend be, const model_opts *opts,
                           model **out) {
    *out = NULL;
    model *m;
    PEFT_TRY(model_build(cfg, be, opts, NULL, NULL, &m));
    float *w = NULL, *tmp = NULL;
    if (m->nqweights && compress_scratch(m, &w, &tmp)) {
        model_free(m);
        return PEFT_ENOMEM;
    }
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
        float *dst = p->q ? w : p->data;
        for (size_t j = 0; j < p->numel; j++) dst[j] = s * rng_normal(&r);
        if (p->q) {
            int rc = compress_param(m, p, w, tmp);
            if (rc) {
                free(w);
                free(tmp);
                model_free(m);
                return rc;
            }
        }
    }
    free(w);
    free(tmp);
    *out = m;
    return PEFT_OK;
}

int model_save(const model *m, const char *dir) {
    if (m->nqweights)
        return err_set(PEFT_EUNSUPPORTED, "%s: the model's block weights are stored %s; load it without --quantize/--bf16 "
                       "to save it", dir, qweight_format_name(m->qweights[0].fmt));
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
        if (!want || want(&m->params[i], ctx)) {
            if (m->params[i].q)
                return err_set(PEFT_EUNSUPPORTED, "'%s' is stored %s and cannot be trained (train it unquantised: "
                               "--quantize none, no --bf16)", m->params[i].name, qweight_format_name(m->params[i].q->fmt));
            m->ngrads += m->params[i].numel;
        }
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
