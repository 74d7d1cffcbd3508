/* adapter_load.c - peft, AdapterHub and io adapter directories onto a model (adapter_load.h). */
#include "export/adapter_load.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "export/export.h"
#include "export/export_impl.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "peft/bottleneck.h"

typedef enum { AF_PEFT, AF_ADAPTERHUB, AF_IO } af_format;

struct adapter_file {
    af_format format;
    char config_path[4200], weights_path[4200];
    cJSON *config;
    st_file *st;
    peft_config cfg;
    char *targets, *feedforward; /* owned comma lists */
    const char *name;            /* AdapterHub adapter name (into config) */
};

#define LORA_PREFIX "base_model.model."

void adapter_close(adapter_file *a) {
    if (!a) return;
    cJSON_Delete(a->config);
    st_close(a->st);
    free(a->targets);
    free(a->feedforward);
    free(a);
}

const peft_config *adapter_config(const adapter_file *a) { return &a->cfg; }

const struct st_file *adapter_weights(const adapter_file *a) { return a->st; }

const char *adapter_format(const adapter_file *a) {
    return a->format == AF_PEFT ? "peft" : (a->format == AF_ADAPTERHUB ? "adapterhub" : EXPORT_IO_FORMAT);
}

/* Appends s to a malloc'd comma list. */
static int list_append(char **list, const char *s, size_t n) {
    size_t old = *list ? strlen(*list) : 0;
    char *q = realloc(*list, old + n + 2);
    if (!q) return err_set(PEFT_ENOMEM, "out of memory");
    if (old) q[old++] = ',';
    memcpy(q + old, s, n);
    q[old + n] = '\0';
    *list = q;
    return PEFT_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* A config value that must be absent, null, false or empty for us to reproduce the adapter. */
static int require_unset(const adapter_file *a, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return PEFT_OK;
    if ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child) return PEFT_OK;
    return err_set(PEFT_EUNSUPPORTED, "%s: '%s' is set; adapters with %s are not supported", a->config_path, key, key);
}

/* Appends the module named by key[prefix, len) to a target list, after checking that the model
 * has it (a weight of that name). */
static int add_module(adapter_file *a, const model *m, const char *key, size_t len, char **list) {
    const char *mod = key + strlen(LORA_PREFIX);
    char wname[256];
    snprintf(wname, sizeof wname, "%.*s.weight", (int)len, mod);
    if (m && !model_find_param(m, wname))
        return err_set(PEFT_EMISMATCH, "%s: key '%s': the model (%s, %d layers) has no module '%.*s'", a->weights_path,
                       key, m->cfg.model_type, m->cfg.num_layers, (int)len, mod);
    return list_append(list, mod, len);
}

/* LoRA/DoRA: the modules are the ones the file holds lora_A for. */
static int peft_lora(adapter_file *a, const model *m) {
    const cJSON *o = a->config;
    const char *f = a->config_path;
    peft_config *c = &a->cfg;
    bool dora = false;
    double alpha, dropout = 0;
    PEFT_TRY(json_get_bool_opt(o, "use_dora", f, &dora));
    peft_config_defaults(c, dora ? PEFT_DORA : PEFT_LORA);
    PEFT_TRY(json_get_int_req(o, "r", f, &c->r));
    PEFT_TRY(json_get_double_req(o, "lora_alpha", f, &alpha));
    c->lora_alpha = (float)alpha;
    PEFT_TRY(json_get_double_opt(o, "lora_dropout", f, &dropout));
    c->lora_dropout = (float)dropout;
    PEFT_TRY(json_get_bool_opt(o, "use_rslora", f, &c->use_rslora));
    PEFT_TRY(json_get_bool_opt(o, "lora_bias", f, &c->lora_b_bias));
    PEFT_TRY(json_get_string_opt(o, "bias", f, &c->lora_bias));
    if (strcmp(c->lora_bias, "none") && strcmp(c->lora_bias, "lora_only") && strcmp(c->lora_bias, "all"))
        return err_set(PEFT_EFORMAT, "%s: 'bias' must be none, lora_only or all, got '%s'", f, c->lora_bias);
    static const char *unsupported[] = {"rank_pattern", "alpha_pattern", "modules_to_save", "layer_replication",
                                        "trainable_token_indices", "target_parameters", "use_qalora",
                                        "alora_invocation_tokens"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) PEFT_TRY(require_unset(a, o, unsupported[i]));
    for (size_t i = 0; i < st_count(a->st); i++) {
        const char *k = st_at(a->st, i)->name;
        if (!strncmp(k, LORA_PREFIX, strlen(LORA_PREFIX)) && ends_with(k, ".lora_A.weight"))
            PEFT_TRY(add_module(a, m, k, strlen(k) - strlen(LORA_PREFIX) - strlen(".lora_A.weight"), &a->targets));
    }
    if (!a->targets)
        return err_set(PEFT_EFORMAT, "%s: no LoRA weights (keys base_model.model.<module>.lora_A.weight)", a->weights_path);
    c->target_modules = a->targets;
    return PEFT_OK;
}

/* IA3: output scaling [out, 1], input scaling (feed-forward) [1, in]. */
static int peft_ia3(adapter_file *a, const model *m) {
    peft_config_defaults(&a->cfg, PEFT_IA3);
    PEFT_TRY(require_unset(a, a->config, "modules_to_save"));
    for (size_t i = 0; i < st_count(a->st); i++) {
        const st_tensor *t = st_at(a->st, i);
        if (strncmp(t->name, LORA_PREFIX, strlen(LORA_PREFIX)) || !ends_with(t->name, ".ia3_l")) continue;
        const char *mod = t->name + strlen(LORA_PREFIX);
        size_t n = strlen(mod) - strlen(".ia3_l");
        if (t->ndim != 2 || (t->shape[0] != 1 && t->shape[1] != 1))
            return err_set(PEFT_EFORMAT, "%s: key '%s' must be [out, 1] or [1, in]", a->weights_path, t->name);
        PEFT_TRY(add_module(a, m, t->name, n, &a->targets));
        if (t->shape[0] == 1 && t->shape[1] != 1) PEFT_TRY(list_append(&a->feedforward, mod, n));
    }
    if (!a->targets) return err_set(PEFT_EFORMAT, "%s: no IA3 weights (keys base_model.model.<module>.ia3_l)", a->weights_path);
    a->cfg.target_modules = a->targets;
    /* no feed-forward module: an empty list, not the family default */
    a->cfg.feedforward_modules = a->feedforward ? a->feedforward : "";
    return PEFT_OK;
}

static int peft_prompt(adapter_file *a, const model *m, bool prefix) {
    const cJSON *o = a->config;
    const char *f = a->config_path;
    peft_config_defaults(&a->cfg, prefix ? PEFT_PREFIX : PEFT_PROMPT);
    int token_dim, layers = -1, subs = 1;
    PEFT_TRY(json_get_int_req(o, "num_virtual_tokens", f, &a->cfg.num_virtual_tokens));
    PEFT_TRY(json_get_int_req(o, "token_dim", f, &token_dim));
    PEFT_TRY(json_get_int_opt(o, "num_transformer_submodules", f, &subs));
    PEFT_TRY(json_get_int_opt(o, "num_layers", f, &layers));
    if (subs != 1) return err_set(PEFT_EUNSUPPORTED, "%s: num_transformer_submodules %d (encoder-decoder) is not supported", f, subs);
    if (!m) return PEFT_OK;
    const model_config *mc = &m->cfg;
    const int want = prefix ? mc->num_kv_heads * mc->head_dim : mc->hidden_size;
    if (token_dim != want)
        return err_set(PEFT_EMISMATCH, "%s: token_dim %d does not fit the model (%s %d)", f, token_dim,
                       prefix ? "key/value width" : "hidden size", want);
    if (prefix && layers >= 0 && layers != mc->num_layers)
        return err_set(PEFT_EMISMATCH, "%s: num_layers %d, the model has %d", f, layers, mc->num_layers);
    return PEFT_OK; /* a projected prefix was saved as its output: it loads as a plain prefix */
}

static int open_peft(adapter_file *a, const model *m) {
    const char *type;
    PEFT_TRY(json_get_string_req(a->config, "peft_type", a->config_path, &type));
    if (!strcmp(type, "LORA")) return peft_lora(a, m);
    if (!strcmp(type, "IA3")) return peft_ia3(a, m);
    if (!strcmp(type, "PROMPT_TUNING")) return peft_prompt(a, m, false);
    if (!strcmp(type, "PREFIX_TUNING")) return peft_prompt(a, m, true);
    return err_set(PEFT_EUNSUPPORTED, "%s: peft_type '%s' is not supported (LORA, IA3, PROMPT_TUNING, PREFIX_TUNING)",
                   a->config_path, type);
}

/* A BnConfig bool; absent: the BnConfig default. */
static int bn_bool(const adapter_file *a, const cJSON *c, const char *key, bool dflt, bool *out) {
    *out = dflt;
    return json_get_bool_opt(c, key, a->config_path, out);
}

static int open_adapterhub(adapter_file *a, const model *m) {
    const char *f = a->config_path;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a->config, "config");
    if (!cJSON_IsObject(c)) return err_set(PEFT_EFORMAT, "%s: 'config' must be an object", f);
    PEFT_TRY(json_get_string_req(a->config, "name", f, &a->name));
    int hidden = m ? m->cfg.hidden_size : 0;
    PEFT_TRY(json_get_int_opt(a->config, "hidden_size", f, &hidden));
    if (m && hidden != m->cfg.hidden_size)
        return err_set(PEFT_EMISMATCH, "%s: hidden_size %d, the model has %d", f, hidden, m->cfg.hidden_size);
    const char *arch = NULL;
    PEFT_TRY(json_get_string_opt(c, "architecture", f, &arch));
    if (arch && strcmp(arch, "bottleneck"))
        return err_set(PEFT_EUNSUPPORTED, "%s: architecture '%s' is not supported (bottleneck adapters only)", f, arch);
    bool mh, out, oln_before, parallel, ln_before, oln_after, res_before = true;
    PEFT_TRY(bn_bool(a, c, "mh_adapter", false, &mh));
    PEFT_TRY(bn_bool(a, c, "output_adapter", false, &out));
    PEFT_TRY(bn_bool(a, c, "original_ln_before", false, &oln_before));
    PEFT_TRY(bn_bool(a, c, "is_parallel", false, &parallel));
    PEFT_TRY(bn_bool(a, c, "ln_before", false, &ln_before));
    PEFT_TRY(bn_bool(a, c, "original_ln_after", true, &oln_after));
    const cJSON *rb = cJSON_GetObjectItemCaseSensitive(c, "residual_before_ln");
    if (rb && !cJSON_IsTrue(rb)) res_before = false;
    static const char *unsupported[] = {"ln_after", "use_gating", "adapter_residual_before_ln", "leave_out", "phm_layer",
                                        "inv_adapter", "cross_adapter"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) PEFT_TRY(require_unset(a, c, unsupported[i]));
    if (!oln_after || !res_before)
        return err_set(PEFT_EUNSUPPORTED, "%s: original_ln_after and residual_before_ln must be true", f);
    const bn_preset *b = NULL;
    for (int i = 0; i < 4 && !b; i++) {
        const bn_preset *q = &export_bn_presets[i];
        if (q->mh_adapter == mh && q->output_adapter == out && q->original_ln_before == oln_before &&
            q->is_parallel == parallel && q->ln_before == ln_before)
            b = q;
    }
    if (!b)
        return err_set(PEFT_EUNSUPPORTED, "%s: this BnConfig (mh_adapter %d, output_adapter %d, original_ln_before %d, "
                       "is_parallel %d, ln_before %d) is none of houlsby, pfeiffer, parallel, bapna", f, mh, out,
                       oln_before, parallel, ln_before);
    peft_config_defaults(&a->cfg, b->method);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "scaling");
    double scaling = cJSON_IsNumber(s) ? s->valuedouble : (s ? NAN : 1.0);
    if (scaling != b->scaling)
        return err_set(PEFT_EUNSUPPORTED, "%s: scaling must be %g for %s adapters", f, b->scaling, peft_method_name(b->method));
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(c, "reduction_factor");
    if (!cJSON_IsNumber(rf) || !(rf->valuedouble > 0))
        return err_set(PEFT_EUNSUPPORTED, "%s: reduction_factor must be a positive number (no per-layer mapping)", f);
    a->cfg.reduction_factor = (float)rf->valuedouble;
    PEFT_TRY(json_get_string_req(c, "non_linearity", f, &a->cfg.non_linearity));
    /* legacy configs (no "version") meant gelu_new by "gelu" (FORMATS.md §3.1) */
    if (!cJSON_GetObjectItemCaseSensitive(a->config, "version") && !strcmp(a->cfg.non_linearity, "gelu"))
        a->cfg.non_linearity = "gelu_new";
    bn_act act;
    if (bottleneck_act_parse(a->cfg.non_linearity, &act))
        return err_set(PEFT_EUNSUPPORTED, "%s: non_linearity '%s' is not supported (relu, swish, silu, gelu, gelu_new)", f,
                       a->cfg.non_linearity);
    return PEFT_OK;
}

static int open_io(adapter_file *a, const model *m) {
    const char *f = a->config_path;
    int version, hidden;
    double rf = 16;
    PEFT_TRY(json_get_int_req(a->config, "version", f, &version));
    if (version != 1) return err_set(PEFT_EFORMAT, "%s: %s version %d (this build reads 1)", f, EXPORT_IO_FORMAT, version);
    PEFT_TRY(json_get_int_req(a->config, "hidden_size", f, &hidden));
    if (m && hidden != m->cfg.hidden_size)
        return err_set(PEFT_EMISMATCH, "%s: hidden_size %d, the model has %d", f, hidden, m->cfg.hidden_size);
    peft_config_defaults(&a->cfg, PEFT_IO);
    PEFT_TRY(json_get_double_req(a->config, "reduction_factor", f, &rf));
    a->cfg.reduction_factor = (float)rf;
    PEFT_TRY(json_get_string_req(a->config, "non_linearity", f, &a->cfg.non_linearity));
    bn_act act;
    if (!(rf > 0) || bottleneck_act_parse(a->cfg.non_linearity, &act))
        return err_set(PEFT_EFORMAT, "%s: reduction_factor %g or non_linearity '%s' is invalid", f, rf, a->cfg.non_linearity);
    return PEFT_OK;
}

int adapter_open(const char *dir, const model *m, adapter_file **out) {
    *out = NULL;
    if (!file_is_dir(dir)) return err_set(PEFT_EUSAGE, "%s: not a directory (--adapter expects an adapter directory)", dir);
    adapter_file *a = calloc(1, sizeof *a);
    if (!a) return err_set(PEFT_ENOMEM, "out of memory");
    int rc = file_join(a->config_path, sizeof a->config_path, dir, "adapter_config.json");
    if (!rc && !file_exists(a->config_path))
        rc = err_set(PEFT_EIO, "%s: missing (expected a peft or AdapterHub adapter directory)", a->config_path);
    if (!rc) rc = json_load_file(a->config_path, &a->config);
    const char *weights = NULL, *pickle = NULL;
    if (!rc) {
        const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(a->config, "format");
        if (cJSON_GetObjectItemCaseSensitive(a->config, "peft_type")) {
            a->format = AF_PEFT;
            weights = "adapter_model.safetensors", pickle = "adapter_model.bin";
        } else if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(a->config, "config"))) {
            a->format = AF_ADAPTERHUB;
            weights = "adapter.safetensors", pickle = "pytorch_adapter.bin";
        } else if (cJSON_IsString(fmt) && !strcmp(fmt->valuestring, EXPORT_IO_FORMAT)) {
            a->format = AF_IO;
            weights = "adapter.safetensors";
        } else {
            rc = err_set(PEFT_EFORMAT, "%s: neither a peft config ('peft_type') nor an AdapterHub config ('config')",
                         a->config_path);
        }
    }
    if (!rc) rc = file_join(a->weights_path, sizeof a->weights_path, dir, weights);
    if (!rc && !file_exists(a->weights_path)) {
        char bin[4200];
        bool has_bin = pickle && !file_join(bin, sizeof bin, dir, pickle) && file_exists(bin);
        rc = err_set(PEFT_EIO, "%s: missing%s", a->weights_path,
                     !has_bin ? "" : a->format == AF_PEFT ? " (only the pickle adapter_model.bin is there: save with "
                                                            "safe_serialization=True)"
                                                          : " (only the pickle pytorch_adapter.bin is there: save with "
                                                            "use_safetensors=True)");
    }
    if (!rc) rc = st_open(a->weights_path, &a->st);
    if (!rc) rc = a->format == AF_PEFT ? open_peft(a, m) : (a->format == AF_ADAPTERHUB ? open_adapterhub(a, m) : open_io(a, m));
    if (rc) {
        adapter_close(a);
        return rc;
    }
    *out = a;
    return PEFT_OK;
}

/* The file's key for one of our tensors. */
static const char *file_key(const adapter_file *a, const char *name, char *buf, size_t cap) {
    const char *at = a->format == AF_ADAPTERHUB ? strstr(name, ".adapters.default.") : NULL;
    if (!at) return name;
    snprintf(buf, cap, "%.*s.adapters.%s.%s", (int)(at - name), name, a->name, at + 18);
    return buf;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && n < cap; d++) n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Copies one tensor; *used marks the file's tensor. */
static int load_tensor(const adapter_file *a, const tt_entry *e, const char *key, float *dst, bool *used) {
    const st_tensor *t = st_find(a->st, key);
    if (!t)
        return err_set(PEFT_EMISMATCH, "%s: missing key '%s' (the adapter's config implies it for this model)",
                       a->weights_path, key);
    bool same = t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
    if (!same) {
        char got[96], want[96];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(want, sizeof want, e->ndim, e->shape);
        return err_set(PEFT_EMISMATCH, "%s: key '%s' has shape %s, the model needs %s", a->weights_path, key, got, want);
    }
    if (st_read_f32(t, dst, e->numel))
        return err_set(PEFT_EUNSUPPORTED, "%s: key '%s' has dtype %s (F32, F16, BF16 or F64 expected)", a->weights_path,
                       key, st_dtype_name(t->dtype));
    for (size_t i = 0; i < st_count(a->st); i++)
        if (st_at(a->st, i) == t) used[i] = true;
    return PEFT_OK;
}

/* A key the method does not use: say which module or tensor it names. */
static int unused_key(const adapter_file *a, const model *m, const char *key) {
    if (!strncmp(key, LORA_PREFIX, strlen(LORA_PREFIX)) && (ends_with(key, ".lora_A.weight") || ends_with(key, ".ia3_l"))) {
        const char *mod = key + strlen(LORA_PREFIX);
        size_t n = strlen(mod) - (ends_with(key, ".ia3_l") ? strlen(".ia3_l") : strlen(".lora_A.weight"));
        return err_set(PEFT_EMISMATCH, "%s: key '%s': '%.*s' is not a linear layer of the model (%s, %d layers)",
                       a->weights_path, key, (int)n, mod, m->cfg.model_type, m->cfg.num_layers);
    }
    return err_set(PEFT_EMISMATCH, "%s: key '%s' fits no tensor of the %s adapter on this model (%s, %d layers)",
                   a->weights_path, key, peft_method_name(a->cfg.method), m->cfg.model_type, m->cfg.num_layers);
}

int adapter_apply(adapter_file *a, model *m, const peft_config *cfg, const tokenizer *tk, peft_model **out) {
    *out = NULL;
    peft_model *p;
    int rc = peft_model_create(m, cfg, tk, &p);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_msg());
        /* the method's settings come from the adapter's config, not from flags: a mismatch, not usage */
        return err_set(rc == PEFT_EUSAGE ? PEFT_EMISMATCH : rc, "%s: does not fit this model (%s, %d layers): %s",
                       a->weights_path, m->cfg.model_type, m->cfg.num_layers, msg);
    }
    const tensor_table *t = peft_model_table(p);
    float *params = peft_model_params(p);
    bool *used = calloc(st_count(a->st) + 1, sizeof *used);
    if (!used) rc = err_set(PEFT_ENOMEM, "out of memory");
    char key[TT_NAME_MAX + 64], alias[TT_NAME_MAX + 96];
    for (int i = 0; !rc && i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        const char *k = file_key(a, e->name, key, sizeof key);
        const char *ln = a->format == AF_ADAPTERHUB ? strstr(k, ".adapter_down.0.") : NULL;
        if (ln && a->cfg.method == PEFT_BAPNA) {
            /* the LayerNorm may be stored as adapter_down.0, adapter_norm_before, or both */
            snprintf(alias, sizeof alias, "%.*s.adapter_norm_before.%s", (int)(ln - k), k, ln + 16);
            const st_tensor *al = st_find(a->st, alias);
            if (al && (rc = load_tensor(a, e, alias, params + e->offset, used))) break;
            if (al && !st_find(a->st, k)) continue;
        }
        rc = load_tensor(a, e, k, params + e->offset, used);
    }
    for (size_t i = 0; !rc && i < st_count(a->st); i++)
        if (!used[i]) rc = unused_key(a, m, st_at(a->st, i)->name);
    free(used);
    if (rc) {
        peft_model_free(p);
        return rc;
    }
    *out = p;
    return PEFT_OK;
}
