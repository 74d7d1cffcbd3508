#include "run_open.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "error.h"
#include "io/json.h"
#include "peft/peft_config_json.h"

void run_close(run_handle *r) {
    peft_model_free(r->p);
    tokenizer_free(r->tk);
    model_free(r->m);
    cJSON_Delete(r->config);
    ckpt_loaded_free(&r->ckpt);
    memset(r, 0, sizeof *r);
}

/* The base storage a run trained with ("base_quantize", "base_bf16"; absent in older runs: fp32). */
static int run_base_opts(const cJSON *config, const char *where, model_opts *o) {
    memset(o, 0, sizeof *o);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(config, "base_quantize");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(config, "base_bf16");
    if (q && (!cJSON_IsString(q) || (strcmp(q->valuestring, "nf4") && strcmp(q->valuestring, "none"))))
        return err_set(PEFT_EFORMAT, "%s: \"base_quantize\" must be \"nf4\" or \"none\"", where);
    if (b && !cJSON_IsBool(b)) return err_set(PEFT_EFORMAT, "%s: \"base_bf16\" must be true or false", where);
    o->quantize = q && !strcmp(q->valuestring, "nf4") ? MODEL_QUANT_NF4 : MODEL_QUANT_NONE;
    o->bf16 = b && cJSON_IsTrue(b);
    return PEFT_OK;
}

int run_open(const char *run_dir, int64_t step, const char *model_override, gemm_backend be, run_handle *r) {
    const model_opts fp32 = {0};
    return run_open_with(run_dir, step, model_override, be, &fp32, r);
}

int run_open_with(const char *run_dir, int64_t step, const char *model_override, gemm_backend be,
                  const model_opts *opts, run_handle *r) {
    memset(r, 0, sizeof *r);
    PEFT_TRY(ckpt_load(run_dir, step, &r->ckpt));
    char where[4200];
    snprintf(where, sizeof where, "%s: checkpoint %lld: run configuration", run_dir, (long long)r->ckpt.step);
    int rc = PEFT_OK;
    r->config = cJSON_Parse(r->ckpt.config_json);
    if (!r->config) {
        rc = err_set(PEFT_EFORMAT, "%s is not JSON", where);
        goto out_fail;
    }
    const char *model_dir = model_override;
    if (!model_dir && (rc = json_get_string_req(r->config, "model", where, &model_dir))) goto out_fail;
    snprintf(r->model_dir, sizeof r->model_dir, "%s", model_dir);
    peft_config pc;
    if ((rc = peft_config_from_json(r->config, where, &pc))) goto out_fail;
    model_opts run_opts;
    if (!opts) {
        if ((rc = run_base_opts(r->config, where, &run_opts))) goto out_fail;
        opts = &run_opts;
    }
    if ((rc = model_load_with(r->model_dir, be, opts, &r->m))) goto out_fail;
    if ((rc = model_tokenizer_load(r->model_dir, &r->tk))) goto out_fail;
    /* text initialisation is irrelevant: the checkpoint's values replace it */
    pc.prompt_init_text = NULL;
    if ((rc = peft_model_create(r->m, &pc, r->tk, &r->p))) goto out_fail;
    const tensor_table *t = peft_model_table(r->p);
    if (tt_hash(t) != tt_hash(&r->ckpt.table)) {
        rc = err_set(PEFT_EMISMATCH, "%s: checkpoint %lld's tensors do not fit %s (%d tensors vs %d; another model?)",
                     run_dir, (long long)r->ckpt.step, r->model_dir, r->ckpt.table.n, t->n);
        goto out_fail;
    }
    memcpy(peft_model_params(r->p), r->ckpt.params, t->total * sizeof(float));
    return PEFT_OK;
out_fail:
    run_close(r);
    return rc;
}
