/* peft.c - building a peft_model: method names, target matching, the tensor table, init. */
#include "peft/peft_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static const char *method_names[PEFT_METHOD_COUNT] = {"full",    "lora",  "dora",     "ia3",      "prompt", "prefix",
                                                      "houlsby", "bapna", "pfeiffer", "parallel", "io"};

bool peft_method_is_qlora(const char *s) { return s && !strcmp(s, "qlora"); }

int peft_method_parse(const char *s, peft_method *out) {
    if (peft_method_is_qlora(s)) {
        *out = PEFT_LORA;
        return PEFT_OK;
    }
    for (int i = 0; i < PEFT_METHOD_COUNT; i++)
        if (!strcmp(s, method_names[i])) {
            *out = (peft_method)i;
            return PEFT_OK;
        }
    return err_set(PEFT_EUSAGE, "--method: unknown method '%s' (full, lora, qlora, dora, ia3, prompt, prefix, houlsby, bapna, "
                   "pfeiffer, parallel, io)", s);
}

const char *peft_method_name(peft_method m) { return method_names[m]; }

void peft_config_defaults(peft_config *c, peft_method method) {
    memset(c, 0, sizeof *c);
    c->method = method;
    c->r = 8;
    c->lora_alpha = 8.0f;
    c->lora_bias = "none";
    c->num_virtual_tokens = 20;
    c->seed = 42;
}

const char *peft_config_targets(const peft_config *c, model_arch arch) {
    const bool gpt2 = arch == ARCH_GPT2;
    if (c->target_modules) return c->target_modules;
    if (c->method == PEFT_IA3) return gpt2 ? "c_attn,mlp.c_proj" : "k_proj,v_proj,down_proj";
    return gpt2 ? "c_attn" : "q_proj,v_proj";
}

const char *peft_config_feedforward(const peft_config *c, model_arch arch) {
    if (c->feedforward_modules) return c->feedforward_modules;
    return arch == ARCH_GPT2 ? "mlp.c_proj" : "down_proj";
}

/* peft's list rule: the module name equals an entry or ends with "." + entry. */
static bool matches_list(const char *module, const char *list) {
    const char *p = list;
    size_t ml = strlen(module);
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n > 0 && n <= ml && !strncmp(module + ml - n, p, n) && (n == ml || module[ml - n - 1] == '.')) return true;
        if (!comma) break;
        p = comma + 1;
    }
    return false;
}

/* IA3's feed-forward rule is a plain suffix test. */
static bool ends_with_any(const char *module, const char *list) {
    const char *p = list;
    size_t ml = strlen(module);
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n > 0 && n <= ml && !strncmp(module + ml - n, p, n)) return true;
        if (!comma) break;
        p = comma + 1;
    }
    return false;
}

static int parse_layers(const char *s, int L, bool *keep) {
    for (int i = 0; i < L; i++) keep[i] = s == NULL;
    if (!s) return PEFT_OK;
    if (!*s) return err_set(PEFT_EUSAGE, "--layers-to-transform is empty (omit it to adapt every layer)");
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ','))
            return err_set(PEFT_EUSAGE, "--layers-to-transform: expected comma-separated layer indices, got '%s'", s);
        if (v < 0 || v >= L)
            return err_set(PEFT_EUSAGE, "--layers-to-transform: layer %ld is out of range (the model has %d layers)", v, L);
        keep[v] = true;
        p = *end ? end + 1 : end;
    }
    return PEFT_OK;
}

/* The linear layers of block l in module order. */
static int block_linears(model *m, int l, linear **out) {
    block *b = &m->blocks[l];
    int n = 0;
    if (m->cfg.arch == ARCH_GPT2) {
        out[n++] = &b->qkv;
        out[n++] = &b->o;
        out[n++] = &b->fc;
        out[n++] = &b->down;
    } else {
        out[n++] = &b->q;
        out[n++] = &b->k;
        out[n++] = &b->v;
        out[n++] = &b->o;
        out[n++] = &b->fc;
        out[n++] = &b->up;
        out[n++] = &b->down;
    }
    return n;
}

static const char *module_suffix_list(const model *m) {
    return m->cfg.arch == ARCH_GPT2 ? "c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj"
                                    : "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj";
}

static void uniform_fill(rng_state *r, float *x, size_t n, float bound) {
    for (size_t i = 0; i < n; i++) x[i] = (2.0f * rng_uniform(r) - 1.0f) * bound;
}

static void normal_fill(rng_state *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(r);
}

/* ---- registering tensors: pass 1 builds the table, pass 2 (after allocation) wires pointers ---- */

typedef struct builder {
    peft_model *p;
    bool wire; /* second pass */
    int idx;   /* running tensor index in pass 2 */
} builder;

/* Registers (pass 1) or returns the param/grad pointers of (pass 2) the next tensor. */
static int reg(builder *b, const char *name, int ndim, int64_t d0, int64_t d1, bool decay, float **data, float **grad) {
    peft_model *p = b->p;
    if (!b->wire) {
        int64_t shape[2] = {d0, d1};
        return tt_add(&p->table, name, ndim, shape, decay, NULL);
    }
    const tt_entry *e = &p->table.e[b->idx++];
    PEFT_ASSERT(!strcmp(e->name, name));
    *data = p->params + e->offset;
    *grad = p->grads + e->offset;
    return PEFT_OK;
}

/* AdapterHub's names (adapter_down is a Sequential: .0 the Linear, or the LayerNorm then .1);
 * io adapters, our own format, name the Linear plainly adapter_down. */
static int reg_bottleneck(builder *b, bottleneck *ad, const char *prefix, bool io) {
    char name[TT_NAME_MAX];
    const int H = ad->H, d = ad->d;
    const char *lin = ad->ln_before ? "adapter_down.1" : (io ? "adapter_down" : "adapter_down.0");
    if (ad->ln_before) {
        snprintf(name, sizeof name, "%s.adapter_down.0.weight", prefix);
        PEFT_TRY(reg(b, name, 1, H, 0, false, &ad->ln_w, &ad->dln_w));
        snprintf(name, sizeof name, "%s.adapter_down.0.bias", prefix);
        PEFT_TRY(reg(b, name, 1, H, 0, false, &ad->ln_b, &ad->dln_b));
    }
    snprintf(name, sizeof name, "%s.%s.weight", prefix, lin);
    PEFT_TRY(reg(b, name, 2, d, H, true, &ad->down_w, &ad->ddown_w));
    snprintf(name, sizeof name, "%s.%s.bias", prefix, lin);
    PEFT_TRY(reg(b, name, 1, d, 0, false, &ad->down_b, &ad->ddown_b));
    snprintf(name, sizeof name, "%s.adapter_up.weight", prefix);
    PEFT_TRY(reg(b, name, 2, H, d, true, &ad->up_w, &ad->dup_w));
    snprintf(name, sizeof name, "%s.adapter_up.bias", prefix);
    return reg(b, name, 1, H, 0, false, &ad->up_b, &ad->dup_b);
}

/* The layers a linear-layer method targets, and whether each is feed-forward (IA3). */
static int select_targets(peft_model *p, linear **sel, bool *ff, int *nsel) {
    model *m = p->m;
    const peft_config *c = &p->cfg;
    const bool ia3 = c->method == PEFT_IA3;
    const char *targets = peft_config_targets(c, m->cfg.arch);
    const char *ffm = peft_config_feedforward(c, m->cfg.arch);
    bool *keep = calloc((size_t)m->cfg.num_layers, sizeof *keep);
    if (!keep) return err_set(PEFT_ENOMEM, "out of memory");
    int rc = parse_layers(c->layers_to_transform, m->cfg.num_layers, keep);
    int n = 0, any = 0;
    p->grad_floor = m->cfg.num_layers;
    for (int l = 0; rc == PEFT_OK && l < m->cfg.num_layers; l++) {
        linear *ls[8];
        int k = block_linears(m, l, ls);
        for (int i = 0; i < k; i++) {
            if (!matches_list(ls[i]->module, targets)) continue;
            any = 1;
            if (!keep[l]) continue;
            sel[n] = ls[i];
            ff[n] = ia3 && ends_with_any(ls[i]->module, ffm);
            if (l < p->grad_floor) p->grad_floor = l;
            n++;
        }
    }
    free(keep);
    if (rc) return rc;
    if (!any)
        return err_set(PEFT_EUSAGE, "--target-modules '%s' matches no module of the model (its linear layers: %s)", targets,
                       module_suffix_list(m));
    *nsel = n;
    return PEFT_OK;
}

static int build_linear_method(builder *b) {
    peft_model *p = b->p;
    const peft_config *c = &p->cfg;
    if (!b->wire) {
        int cap = 8 * p->m->cfg.num_layers;
        linear **sel = calloc((size_t)cap, sizeof *sel);
        bool *ff = calloc((size_t)cap, sizeof *ff);
        p->hooks = calloc((size_t)cap, sizeof *p->hooks);
        p->hooked = sel;
        if (!sel || !ff || !p->hooks) {
            free(ff);
            return err_set(PEFT_ENOMEM, "out of memory");
        }
        int rc = select_targets(p, sel, ff, &p->nhooks);
        for (int i = 0; rc == PEFT_OK && i < p->nhooks; i++) {
            linear_hook *h = &p->hooks[i];
            h->kind = c->method == PEFT_IA3 ? (ff[i] ? HOOK_IA3_IN : HOOK_IA3_OUT)
                                            : (c->method == PEFT_DORA ? HOOK_DORA : HOOK_LORA);
            h->r = c->r;
            h->scaling = c->use_rslora ? c->lora_alpha / sqrtf((float)c->r) : c->lora_alpha / (float)c->r;
            h->dropout = c->lora_dropout;
            h->training = &p->training;
            h->rng = &p->dropout_rng;
        }
        free(ff);
        if (rc) return rc;
    }
    char name[TT_NAME_MAX];
    for (int i = 0; i < p->nhooks; i++) {
        linear_hook *h = &p->hooks[i];
        const linear *l = p->hooked[i];
        if (h->kind == HOOK_IA3_OUT || h->kind == HOOK_IA3_IN) {
            snprintf(name, sizeof name, "base_model.model.%s.ia3_l", l->module);
            bool in = h->kind == HOOK_IA3_IN;
            PEFT_TRY(reg(b, name, 2, in ? 1 : l->out, in ? l->in : 1, false, &h->l, &h->dl));
            continue;
        }
        snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", l->module);
        PEFT_TRY(reg(b, name, 2, h->r, l->in, true, &h->A, &h->dA));
        snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", l->module);
        PEFT_TRY(reg(b, name, 2, l->out, h->r, true, &h->B, &h->dB));
        if (c->lora_b_bias) {
            snprintf(name, sizeof name, "base_model.model.%s.lora_B.bias", l->module);
            PEFT_TRY(reg(b, name, 1, l->out, 0, false, &h->B_bias, &h->dB_bias));
        }
        if (h->kind == HOOK_DORA) {
            snprintf(name, sizeof name, "base_model.model.%s.lora_magnitude_vector", l->module);
            PEFT_TRY(reg(b, name, 1, l->out, 0, false, &h->mag, &h->dmag));
        }
    }
    return PEFT_OK;
}

/* Points a model param at its trainable copy in the flat buffer (restored by peft_model_free). */
static int redirect(peft_model *p, param *pr, float *data, float *grad) {
    if (!p->redirected) {
        p->redirected = calloc((size_t)p->m->nparams, sizeof *p->redirected);
        p->orig_data = calloc((size_t)p->m->nparams, sizeof *p->orig_data);
        if (!p->redirected || !p->orig_data) return err_set(PEFT_ENOMEM, "out of memory");
    }
    memcpy(data, pr->data, pr->numel * sizeof(float));
    p->redirected[p->nred] = pr;
    p->orig_data[p->nred++] = pr->data;
    pr->data = data;
    pr->grad = grad;
    return PEFT_OK;
}

/* Base biases that train with LoRA/DoRA (--lora-bias lora_only|all): the model's own param
 * then reads the flat buffer. */
static int build_lora_bias(builder *b) {
    peft_model *p = b->p;
    const char *mode = p->cfg.lora_bias ? p->cfg.lora_bias : "none";
    if (!strcmp(mode, "none")) return PEFT_OK;
    if (strcmp(mode, "lora_only") && strcmp(mode, "all"))
        return err_set(PEFT_EUSAGE, "--lora-bias: expected none, lora_only or all, got '%s'", mode);
    model *m = p->m;
    char name[TT_NAME_MAX];
    for (int i = 0; i < m->nparams; i++) {
        param *pr = &m->params[i];
        size_t nl = strlen(pr->name);
        if (nl < 5 || strcmp(pr->name + nl - 5, ".bias")) continue;
        bool targeted = false;
        for (int h = 0; h < p->nhooks && !targeted; h++) targeted = p->hooked[h]->bias == pr;
        if (!targeted && strcmp(mode, "all")) continue;
        if (!targeted) p->grad_floor = 0; /* a bias below the lowest adapter trains too */
        if (targeted) snprintf(name, sizeof name, "base_model.model.%.*s.base_layer.bias", (int)(nl - 5), pr->name);
        else snprintf(name, sizeof name, "base_model.model.%s", pr->name);
        float *data = NULL, *grad = NULL;
        PEFT_TRY(reg(b, name, 1, pr->shape[0], 0, false, &data, &grad));
        if (b->wire) PEFT_TRY(redirect(p, pr, data, grad));
    }
    return PEFT_OK;
}

static int build_full(builder *b) {
    model *m = b->p->m;
    for (int i = 0; i < m->nparams; i++) {
        param *pr = &m->params[i];
        if (pr->q)
            return err_set(PEFT_EUNSUPPORTED, "--method full trains '%s', which is stored compressed; full fine-tuning "
                           "needs an unquantised base (--quantize none, no --bf16)", pr->name);
        bool decay = pr->ndim == 2; /* HF's Trainer: no decay for biases and norm weights */
        float *data = NULL, *grad = NULL;
        PEFT_TRY(reg(b, pr->name, pr->ndim, pr->shape[0], pr->shape[1], decay, &data, &grad));
        if (b->wire) PEFT_TRY(redirect(b->p, pr, data, grad));
    }
    return PEFT_OK;
}

static int build_prompt_prefix(builder *b) {
    peft_model *p = b->p;
    const model_config *mc = &p->m->cfg;
    const peft_config *c = &p->cfg;
    const int K = mc->num_kv_heads * mc->head_dim, row = mc->num_layers * 2 * K;
    if (c->num_virtual_tokens <= 0) return err_set(PEFT_EUSAGE, "--num-virtual-tokens must be positive");
    if (c->method == PEFT_PROMPT) {
        p->nv = c->num_virtual_tokens;
        return reg(b, "prompt_embeddings", 2, p->nv, mc->hidden_size, false, &p->virt, &p->dvirt);
    }
    p->np = c->num_virtual_tokens;
    if (!c->prefix_projection) return reg(b, "prompt_embeddings", 2, p->np, row, false, &p->prefix, &p->dprefix);
    p->token_dim = K;
    p->enc_hidden = c->encoder_hidden_size > 0 ? c->encoder_hidden_size : K;
    PEFT_TRY(reg(b, "prompt_encoder.embedding.weight", 2, p->np, K, false, &p->emb, &p->demb));
    PEFT_TRY(reg(b, "prompt_encoder.transform.0.weight", 2, p->enc_hidden, K, true, &p->w0, &p->dw0));
    PEFT_TRY(reg(b, "prompt_encoder.transform.0.bias", 1, p->enc_hidden, 0, false, &p->b0, &p->db0));
    PEFT_TRY(reg(b, "prompt_encoder.transform.2.weight", 2, row, p->enc_hidden, true, &p->w2, &p->dw2));
    return reg(b, "prompt_encoder.transform.2.bias", 1, row, 0, false, &p->b2, &p->db2);
}

static int build_adapters(builder *b) {
    peft_model *p = b->p;
    model *m = p->m;
    const peft_config *c = &p->cfg;
    const int L = m->cfg.num_layers, H = m->cfg.hidden_size;
    const bool gpt2 = m->cfg.arch == ARCH_GPT2;
    if (!b->wire) {
        float rf = c->reduction_factor > 0 ? c->reduction_factor : (c->method == PEFT_PARALLEL ? 2.0f : 16.0f);
        const char *act = c->non_linearity ? c->non_linearity : (c->method == PEFT_HOULSBY ? "swish" : "relu");
        bn_act a;
        PEFT_TRY(bottleneck_act_parse(act, &a));
        int d = (int)((float)H / rf);
        if (d < 1) d = 1;
        p->nadapters = c->method == PEFT_HOULSBY ? 2 * L : (c->method == PEFT_IO ? 2 : L);
        p->adapters = calloc((size_t)p->nadapters, sizeof *p->adapters);
        if (!p->adapters) return err_set(PEFT_ENOMEM, "out of memory");
        for (int i = 0; i < p->nadapters; i++) {
            bottleneck *ad = &p->adapters[i];
            ad->H = H;
            ad->d = d;
            ad->act = a;
            ad->scaling = c->method == PEFT_PARALLEL ? 4.0f : 1.0f;
            ad->ln_before = c->method == PEFT_BAPNA;
            ad->input = c->method == PEFT_PFEIFFER ? BN_IN_STREAM
                                                   : (c->method == PEFT_PARALLEL ? BN_IN_RESIDUAL : BN_IN_SUBLAYER);
        }
    }
    char prefix[TT_NAME_MAX];
    if (c->method == PEFT_IO) {
        PEFT_TRY(reg_bottleneck(b, &p->adapters[0], "io_adapters.input", true));
        return reg_bottleneck(b, &p->adapters[1], "io_adapters.output", true);
    }
    int k = 0;
    for (int l = 0; l < L; l++) {
        const char *base = gpt2 ? "transformer.h" : "model.layers";
        if (c->method == PEFT_HOULSBY || c->method == PEFT_BAPNA) {
            snprintf(prefix, sizeof prefix, "%s.%d.attention_adapters.adapters.default", base, l);
            PEFT_TRY(reg_bottleneck(b, &p->adapters[k++], prefix, false));
        }
        if (c->method != PEFT_BAPNA) {
            snprintf(prefix, sizeof prefix, "%s.%d.output_adapters.adapters.default", base, l);
            PEFT_TRY(reg_bottleneck(b, &p->adapters[k++], prefix, false));
        }
    }
    return PEFT_OK;
}

static int build(builder *b) {
    switch (b->p->cfg.method) {
    case PEFT_FULL: return build_full(b);
    case PEFT_LORA:
    case PEFT_DORA:
        PEFT_TRY(build_linear_method(b));
        return build_lora_bias(b);
    case PEFT_IA3: return build_linear_method(b);
    case PEFT_PROMPT:
    case PEFT_PREFIX: return build_prompt_prefix(b);
    default: return build_adapters(b);
    }
}

/* Initialisation as the libraries do it (FORMATS.md), with a no-op start where promised. */
static int initialise(peft_model *p, const tokenizer *tk) {
    const peft_config *c = &p->cfg;
    model *m = p->m;
    rng_state r;
    rng_seed(&r, c->seed);
    for (int i = 0; i < p->nhooks; i++) {
        linear_hook *h = &p->hooks[i];
        const linear *l = p->hooked[i];
        if (h->kind == HOOK_IA3_OUT || h->kind == HOOK_IA3_IN) {
            size_t n = h->kind == HOOK_IA3_IN ? (size_t)l->in : (size_t)l->out;
            for (size_t j = 0; j < n; j++) h->l[j] = 1.0f;
            continue;
        }
        uniform_fill(&r, h->A, (size_t)h->r * l->in, 1.0f / sqrtf((float)l->in)); /* kaiming_uniform(a=sqrt(5)) */
        memset(h->B, 0, (size_t)l->out * h->r * sizeof(float));
        if (h->kind == HOOK_DORA) {
            PEFT_TRY(linear_hook_reserve(h, l, 1));
            linear_hook_dora_norms(m->gemm, l, h);
            memcpy(h->mag, h->norm, (size_t)l->out * sizeof(float));
        }
    }
    for (int i = 0; i < p->nadapters; i++) {
        bottleneck *ad = &p->adapters[i];
        if (ad->ln_before)
            for (int j = 0; j < ad->H; j++) {
                ad->ln_w[j] = 1.0f;
                ad->ln_b[j] = 0.0f;
            }
        if (c->method == PEFT_PARALLEL) uniform_fill(&r, ad->down_w, (size_t)ad->d * ad->H, 1.0f / sqrtf((float)ad->H));
        else normal_fill(&r, ad->down_w, (size_t)ad->d * ad->H, 0.02f);
        /* zero up-projection: every adapter starts as an exact no-op */
        memset(ad->down_b, 0, (size_t)ad->d * sizeof(float));
        memset(ad->up_w, 0, (size_t)ad->H * ad->d * sizeof(float));
        memset(ad->up_b, 0, (size_t)ad->H * sizeof(float));
    }
    const int C = m->cfg.hidden_size;
    if (p->virt) {
        if (c->prompt_init_text) {
            if (!tk) return err_set(PEFT_EUSAGE, "--prompt-init-text needs the model's tokenizer");
            tok_ids ids = {0};
            PEFT_TRY(tokenizer_encode(tk, c->prompt_init_text, strlen(c->prompt_init_text), false, &ids));
            if (ids.n == 0) {
                free(ids.v);
                return err_set(PEFT_EUSAGE, "--prompt-init-text encodes to no tokens");
            }
            for (int t = 0; t < p->nv; t++) /* cycled or truncated to the virtual tokens, as peft does */
                memcpy(p->virt + (size_t)t * C, m->wte->data + (size_t)ids.v[(size_t)t % ids.n] * C, (size_t)C * sizeof(float));
            free(ids.v);
        } else {
            normal_fill(&r, p->virt, (size_t)p->nv * C, 1.0f); /* nn.Embedding's default init */
        }
    }
    const int K = m->cfg.num_kv_heads * m->cfg.head_dim, row = m->cfg.num_layers * 2 * K;
    if (p->prefix && !p->emb) normal_fill(&r, p->prefix, (size_t)p->np * row, 1.0f);
    if (p->emb) {
        normal_fill(&r, p->emb, (size_t)p->np * K, 1.0f);
        uniform_fill(&r, p->w0, (size_t)p->enc_hidden * K, 1.0f / sqrtf((float)K));
        uniform_fill(&r, p->b0, (size_t)p->enc_hidden, 1.0f / sqrtf((float)K));
        uniform_fill(&r, p->w2, (size_t)row * p->enc_hidden, 1.0f / sqrtf((float)p->enc_hidden));
        uniform_fill(&r, p->b2, (size_t)row, 1.0f / sqrtf((float)p->enc_hidden));
    }
    return PEFT_OK;
}

/* Hooks the model's layers up to the method's state. */
static void attach(peft_model *p) {
    model *m = p->m;
    m->grad_floor = p->grad_floor;
    for (int i = 0; i < p->nhooks; i++) p->hooked[i]->hook = &p->hooks[i];
    const peft_method meth = p->cfg.method;
    if (meth == PEFT_IO) {
        m->in_ad = &p->adapters[0];
        m->out_ad = &p->adapters[1];
        return;
    }
    int k = 0;
    for (int l = 0; l < m->cfg.num_layers && p->nadapters; l++) {
        if (meth == PEFT_HOULSBY || meth == PEFT_BAPNA) m->blocks[l].attn_ad = &p->adapters[k++];
        if (meth != PEFT_BAPNA) m->blocks[l].mlp_ad = &p->adapters[k++];
    }
}

int peft_model_create(model *m, const peft_config *c, const tokenizer *tk, peft_model **out) {
    *out = NULL;
    if ((c->method == PEFT_LORA || c->method == PEFT_DORA) && c->r <= 0)
        return err_set(PEFT_EUSAGE, "--r must be positive, got %d", c->r);
    if (!(c->lora_dropout >= 0.0f && c->lora_dropout < 1.0f))
        return err_set(PEFT_EUSAGE, "--lora-dropout must be in [0, 1), got %g", c->lora_dropout);
    if (m->grads) return err_set(PEFT_EUSAGE, "the model already has trainable parameters");
    peft_model *p = calloc(1, sizeof *p);
    if (!p) return err_set(PEFT_ENOMEM, "out of memory");
    p->cfg = *c;
    p->m = m;
    rng_seed(&p->dropout_rng, c->seed ^ 0x5eedull);
    p->base_params = config_num_params(&m->cfg);
    builder b = {p, false, 0};
    int rc = build(&b);
    if (rc == PEFT_OK) {
        p->params = calloc(p->table.total ? p->table.total : 1, sizeof(float));
        p->grads = calloc(p->table.total ? p->table.total : 1, sizeof(float));
        if (!p->params || !p->grads) rc = err_set(PEFT_ENOMEM, "out of memory for %zu trainable values", p->table.total);
    }
    if (rc == PEFT_OK) {
        b.wire = true;
        rc = build(&b);
    }
    if (rc == PEFT_OK) rc = initialise(p, tk);
    if (rc) {
        peft_model_free(p);
        return rc;
    }
    attach(p);
    *out = p;
    return PEFT_OK;
}

void peft_model_free(peft_model *p) {
    if (!p) return;
    model *m = p->m;
    for (int i = 0; i < p->nhooks; i++) {
        if (p->hooked[i]->hook == &p->hooks[i]) p->hooked[i]->hook = NULL;
        linear_hook_free(&p->hooks[i]);
    }
    for (int l = 0; l < m->cfg.num_layers; l++) m->blocks[l].attn_ad = m->blocks[l].mlp_ad = NULL;
    m->in_ad = m->out_ad = NULL;
    m->grad_floor = 0;
    for (int i = 0; i < p->nadapters; i++) bottleneck_free(&p->adapters[i]);
    /* params that read the flat buffer get their trained values back in their own storage */
    for (int i = 0; i < p->nred; i++) {
        param *pr = p->redirected[i];
        memcpy(p->orig_data[i], pr->data, pr->numel * sizeof(float));
        pr->data = p->orig_data[i];
        pr->grad = NULL;
    }
    free(p->redirected);
    free(p->orig_data);
    free(p->hooks);
    free(p->hooked);
    free(p->adapters);
    free(p->params);
    free(p->grads);
    free(p->mlp_h);
    free(p->mlp_dh);
    free(p->prefix_out);
    free(p->dprefix_out);
    free(p->targets_ext);
    tt_free(&p->table);
    free(p);
}
