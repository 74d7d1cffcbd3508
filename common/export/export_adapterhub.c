/* export_adapterhub.c - bottleneck adapters as AdapterHub `adapters` 1.1.0 saves them
 * (FORMATS.md §3.2, §3.6): adapter_config.json {"config": <the 32 BnConfig fields>, "hidden_size",
 * "model_class", "model_name", "model_type", "name", "version"} and adapter.safetensors (no
 * metadata) with the model's full keys; and io adapters in peft's own format. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "export/export.h"
#include "export/export_impl.h"
#include "io/json.h"
#include "peft/peft_impl.h"

const bn_preset export_bn_presets[4] = {
    {PEFT_HOULSBY, true, true, false, false, false, "bert", 1.0, "swish", 16},        /* double_seq_bn */
    {PEFT_PFEIFFER, false, true, true, false, false, "bert", 1.0, "relu", 16},        /* seq_bn */
    {PEFT_PARALLEL, false, true, false, true, false, "mam_adapter", 4.0, "relu", 2},  /* par_bn */
    {PEFT_BAPNA, true, false, false, false, true, "bert", 1.0, "relu", 16},           /* BnConfig, ln_before */
};

const bn_preset *export_bn_preset(peft_method m) {
    for (int i = 0; i < 4; i++)
        if (export_bn_presets[i].method == m) return &export_bn_presets[i];
    return NULL;
}

#define ADD(expr)                                                                            \
    do {                                                                                     \
        if (!(expr)) { rc = err_set(PEFT_ENOMEM, "out of memory"); goto out; }               \
    } while (0)

static int bn_config(const peft_config *c, const bn_preset *b, cJSON *o) {
    int rc = PEFT_OK;
    ADD(cJSON_AddFalseToObject(o, "adapter_residual_before_ln"));
    ADD(cJSON_AddFalseToObject(o, "cross_adapter"));
    PEFT_TRY(json_add_py_float(o, "dropout", 0.0, false));
    ADD(cJSON_AddTrueToObject(o, "factorized_phm_W"));
    ADD(cJSON_AddFalseToObject(o, "factorized_phm_rule"));
    ADD(cJSON_AddStringToObject(o, "hypercomplex_nonlinearity", "glorot-uniform"));
    ADD(cJSON_AddStringToObject(o, "init_weights", b->init_weights));
    ADD(cJSON_AddNullToObject(o, "inv_adapter"));
    ADD(cJSON_AddNullToObject(o, "inv_adapter_reduction_factor"));
    ADD(cJSON_AddBoolToObject(o, "is_parallel", b->is_parallel));
    ADD(cJSON_AddTrueToObject(o, "learn_phm"));
    ADD(cJSON_AddArrayToObject(o, "leave_out"));
    ADD(cJSON_AddFalseToObject(o, "ln_after"));
    ADD(cJSON_AddBoolToObject(o, "ln_before", b->ln_before));
    ADD(cJSON_AddBoolToObject(o, "mh_adapter", b->mh_adapter));
    ADD(cJSON_AddStringToObject(o, "non_linearity", c->non_linearity ? c->non_linearity : b->non_linearity));
    ADD(cJSON_AddTrueToObject(o, "original_ln_after"));
    ADD(cJSON_AddBoolToObject(o, "original_ln_before", b->original_ln_before));
    ADD(cJSON_AddBoolToObject(o, "output_adapter", b->output_adapter));
    ADD(cJSON_AddTrueToObject(o, "phm_bias"));
    ADD(cJSON_AddStringToObject(o, "phm_c_init", "normal"));
    ADD(cJSON_AddNumberToObject(o, "phm_dim", 4));
    PEFT_TRY(json_add_py_float(o, "phm_init_range", 0.0001, false));
    ADD(cJSON_AddFalseToObject(o, "phm_layer"));
    ADD(cJSON_AddNumberToObject(o, "phm_rank", 1));
    PEFT_TRY(export_add_number(o, "reduction_factor", c->reduction_factor > 0 ? c->reduction_factor : b->reduction_factor));
    ADD(cJSON_AddTrueToObject(o, "residual_before_ln"));
    PEFT_TRY(json_add_py_float(o, "scaling", b->scaling, false));
    ADD(cJSON_AddFalseToObject(o, "shared_W_phm"));
    ADD(cJSON_AddTrueToObject(o, "shared_phm_rule"));
    PEFT_TRY(json_add_py_float(o, "stochastic_depth", 0.0, false));
    ADD(cJSON_AddFalseToObject(o, "use_gating"));
out:
    return rc;
}

/* "...adapters.default.X" -> "...adapters.NAME.X". */
static const char *rename_adapter(const char *name, void *ctx, char *buf, size_t cap) {
    const char *at = strstr(name, ".adapters.default.");
    if (!at) return name;
    snprintf(buf, cap, "%.*s.adapters.%s.%s", (int)(at - name), name, (const char *)ctx, at + 18);
    return buf;
}

/* Bapna's LayerNorm is registered twice in AdapterHub (adapter_down.0 and adapter_norm_before,
 * FORMATS.md §3.6): its state dict holds both names, so the file does too. */
static int add_norm_alias(st_writer *w, peft_model *p, const char *name) {
    const tensor_table *t = peft_model_table(p);
    char key[TT_NAME_MAX + 64], alias[TT_NAME_MAX + 96];
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        const char *ln = strstr(e->name, ".adapter_down.0.");
        if (!ln) continue;
        rename_adapter(e->name, (void *)name, key, sizeof key);
        ln = strstr(key, ".adapter_down.0.");
        snprintf(alias, sizeof alias, "%.*s.adapter_norm_before.%s", (int)(ln - key), key, ln + 16);
        PEFT_TRY(st_writer_add(w, alias, ST_F32, e->ndim, e->shape, peft_model_params(p) + e->offset));
    }
    return PEFT_OK;
}

int export_adapterhub(peft_model *p, const char *base_model, const char *adapter_name, const char *out_dir) {
    const peft_config *c = &p->cfg;
    const bn_preset *b = export_bn_preset(c->method);
    if (c->method == PEFT_IO)
        return err_set(PEFT_EUNSUPPORTED, "export: AdapterHub cannot express io adapters (a bottleneck on the embedding "
                       "output and before the final norm); they are written in peft's own format instead");
    if (!b)
        return err_set(PEFT_EUNSUPPORTED, "export: %s is not an AdapterHub bottleneck adapter; use --format %s",
                       peft_method_name(c->method), c->method == PEFT_FULL ? "merged" : "peft");
    if (!*adapter_name || strchr(adapter_name, '.'))
        return err_set(PEFT_EUSAGE, "export: --adapter-name '%s' must be non-empty and contain no '.'", adapter_name);
    const model_config *mc = &p->m->cfg;
    cJSON *o = cJSON_CreateObject(), *cfg = o ? cJSON_AddObjectToObject(o, "config") : NULL;
    st_writer *w = NULL;
    int rc = PEFT_OK;
    ADD(cfg);
    if ((rc = bn_config(c, b, cfg))) goto out;
    ADD(cJSON_AddNumberToObject(o, "hidden_size", mc->hidden_size));
    ADD(cJSON_AddStringToObject(o, "model_class", config_class_name(mc)));
    ADD(cJSON_AddStringToObject(o, "model_name", base_model));
    ADD(cJSON_AddStringToObject(o, "model_type", mc->model_type));
    ADD(cJSON_AddStringToObject(o, "name", adapter_name));
    ADD(cJSON_AddStringToObject(o, "version", EXPORT_ADAPTERS_VERSION));
    if ((rc = st_writer_init(&w))) goto out;
    if ((rc = export_add_table(w, p, rename_adapter, (void *)adapter_name))) goto out;
    if (b->ln_before && (rc = add_norm_alias(w, p, adapter_name))) goto out;
    char path[4200];
    if ((rc = export_path(path, sizeof path, out_dir, "adapter.safetensors"))) goto out;
    if ((rc = st_writer_save(w, path))) goto out;
    rc = export_write_json(o, out_dir, "adapter_config.json");
out:
    st_writer_free(w);
    cJSON_Delete(o);
    return rc;
}

int export_io(peft_model *p, const char *base_model, const char *out_dir) {
    const peft_config *c = &p->cfg;
    if (c->method != PEFT_IO) return err_set(PEFT_EUSAGE, "export: %s is not an io adapter", peft_method_name(c->method));
    const model_config *mc = &p->m->cfg;
    cJSON *o = cJSON_CreateObject();
    st_writer *w = NULL;
    int rc = PEFT_OK;
    ADD(o);
    ADD(cJSON_AddStringToObject(o, "format", EXPORT_IO_FORMAT));
    ADD(cJSON_AddNumberToObject(o, "version", 1));
    ADD(cJSON_AddStringToObject(o, "base_model_name_or_path", base_model));
    ADD(cJSON_AddNumberToObject(o, "hidden_size", mc->hidden_size));
    ADD(cJSON_AddStringToObject(o, "model_type", mc->model_type));
    ADD(cJSON_AddStringToObject(o, "non_linearity", c->non_linearity ? c->non_linearity : "relu"));
    if ((rc = export_add_number(o, "reduction_factor", c->reduction_factor > 0 ? c->reduction_factor : 16))) goto out;
    if ((rc = st_writer_init(&w))) goto out;
    if ((rc = st_writer_set_metadata(w, "format", "pt"))) goto out;
    if ((rc = export_add_table(w, p, NULL, NULL))) goto out;
    char path[4200];
    if ((rc = export_path(path, sizeof path, out_dir, "adapter.safetensors"))) goto out;
    if ((rc = st_writer_save(w, path))) goto out;
    rc = export_write_json(o, out_dir, "adapter_config.json");
out:
    st_writer_free(w);
    cJSON_Delete(o);
    return rc;
}
