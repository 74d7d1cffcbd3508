/* common.c - helpers the subcommands share (see cli.h). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "data/dataset.h"
#include "error.h"
#include "io/file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

int compute_setup(const compute_flags *cf, gemm_backend *be) {
    *be = gemm_backend_default();
    if (cf->gemm) PEFT_TRY(gemm_backend_parse(cf->gemm, be));
    if (cf->threads < 0) return err_set(PEFT_EUSAGE, "--threads must be 0 (all cores) or positive, got %d", cf->threads);
    gemm_set_threads(cf->threads ? cf->threads : omp_get_num_procs());
    return PEFT_OK;
}

int compute_model_opts(const compute_flags *cf, int dflt_nf4, model_opts *o) {
    memset(o, 0, sizeof *o);
    o->quantize = dflt_nf4 ? MODEL_QUANT_NF4 : MODEL_QUANT_NONE;
    o->bf16 = cf->bf16;
    if (!cf->quantize) return PEFT_OK;
    if (!strcmp(cf->quantize, "nf4")) o->quantize = MODEL_QUANT_NF4;
    else if (!strcmp(cf->quantize, "none")) o->quantize = MODEL_QUANT_NONE;
    else return err_set(PEFT_EUSAGE, "--quantize: expected 'nf4' or 'none', got '%s'", cf->quantize);
    return PEFT_OK;
}

bool compute_storage_given(const compute_flags *cf) { return cf->quantize != NULL || cf->bf16; }

int parse_input_ids(const char *json_line, const char *where, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    cJSON *root = cJSON_Parse(json_line);
    if (!root) return err_set(PEFT_EFORMAT, "%s: not valid JSON", where);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "input_ids");
    int rc = PEFT_OK;
    if (!cJSON_IsArray(arr)) {
        rc = err_set(PEFT_EFORMAT, "%s: expected an object with \"input_ids\": [token ids]", where);
        goto out_free;
    }
    int count = cJSON_GetArraySize(arr);
    int *v = malloc((size_t)(count ? count : 1) * sizeof *v);
    if (!v) {
        rc = err_set(PEFT_ENOMEM, "%s: out of memory", where);
        goto out_free;
    }
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        double d = e->valuedouble;
        if (!cJSON_IsNumber(e) || d != (double)(int)d || d < 0) {
            free(v);
            rc = err_set(PEFT_EFORMAT, "%s: input_ids[%d] is not a non-negative integer", where, i);
            goto out_free;
        }
        v[i] = (int)d;
    }
    *ids = v;
    *n = count;
out_free:
    cJSON_Delete(root);
    return rc;
}

int model_tokenizer_load(const char *model_dir, tokenizer **out) {
    *out = NULL;
    char a[4200], b[4200];
    PEFT_TRY(file_join(a, sizeof a, model_dir, "tokenizer.json"));
    PEFT_TRY(file_join(b, sizeof b, model_dir, "vocab.json"));
    if (!file_exists(a) && !file_exists(b)) return PEFT_OK;
    return tokenizer_load(model_dir, out);
}

int check_dataset_fits_model(const dataset *d, const char *data_dir, const tokenizer *tk, int model_vocab,
                             const char *model_dir) {
    const dataset_info *in = dataset_get_info(d);
    if (tk && in->tokenizer_fingerprint[0] && strcmp(in->tokenizer_fingerprint, tokenizer_fingerprint(tk)) != 0)
        return err_set(PEFT_EMISMATCH, "%s was prepared with another tokenizer (fingerprint %s) than %s's (%s)", data_dir,
                       in->tokenizer_fingerprint, model_dir, tokenizer_fingerprint(tk));
    if (in->vocab_size > model_vocab)
        return err_set(PEFT_EMISMATCH, "%s holds token ids up to %d but %s's vocabulary has %d entries", data_dir,
                       in->vocab_size - 1, model_dir, model_vocab);
    return PEFT_OK;
}
