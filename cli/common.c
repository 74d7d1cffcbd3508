/* common.c - helpers the subcommands share (see cli.h). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "error.h"

int compute_setup(const compute_flags *cf, gemm_backend *be) {
    *be = gemm_backend_default();
    if (cf->gemm) PEFT_TRY(gemm_backend_parse(cf->gemm, be));
    if (cf->threads < 0) return err_set(PEFT_EUSAGE, "--threads must be 0 (all cores) or positive, got %d", cf->threads);
    gemm_set_threads(cf->threads ? cf->threads : omp_get_num_procs());
    return PEFT_OK;
}

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
