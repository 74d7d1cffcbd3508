/* inspect_run.c - `peft inspect RUN_DIR`: the checkpoints of a run (step, time saved, training loss
 * logged at that step, size) and the run's configuration. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "inspect_run.h"
#include "io/file.h"
#include "io/json.h"
#include "store/checkpoint.h"
#include "train/run_state.h"

/* The training loss metrics.jsonl logged at `step` (the last such line: a resumed run may repeat
 * steps); NaN when absent. */
static double logged_loss(const char *run_dir, int64_t step) {
    char path[4200];
    if (file_join(path, sizeof path, run_dir, "metrics.jsonl")) return NAN;
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    char line[4096];
    double loss = NAN;
    while (fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step"), *l = cJSON_GetObjectItemCaseSensitive(o, "loss");
        if (cJSON_IsNumber(s) && cJSON_IsNumber(l) && (int64_t)s->valuedouble == step) loss = l->valuedouble;
        cJSON_Delete(o);
    }
    fclose(f);
    return loss;
}

int inspect_run(const char *run_dir) {
    int64_t *steps = NULL;
    int n = 0;
    PEFT_TRY(ckpt_list(run_dir, &steps, &n));
    printf("run %s: %d checkpoint%s\n", run_dir, n, n == 1 ? "" : "s");
    if (n == 0) {
        free(steps);
        return PEFT_OK;
    }
    printf("  %10s  %-20s  %10s  %10s  %s\n", "step", "saved (UTC)", "train loss", "size", "workers");
    int rc = PEFT_OK;
    char *config = NULL;
    for (int i = 0; i < n && rc == PEFT_OK; i++) {
        ckpt_loaded c;
        if ((rc = ckpt_load(run_dir, steps[i], &c))) break;
        run_state rs = {0};
        char when[32] = "?";
        int workers = 0;
        if (run_state_decode(c.state, c.state_len, "state", &rs) == PEFT_OK) {
            time_t t = (time_t)rs.saved_at;
            struct tm tm;
            if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            workers = rs.workers;
        }
        run_state_free(&rs);
        double bytes = (double)c.table.total * sizeof(float) * (1 + (c.adam_m != NULL) + (c.adam_v != NULL)) +
                       (double)strlen(c.config_json) + (double)c.state_len;
        double loss = logged_loss(run_dir, c.step);
        char loss_s[32];
        snprintf(loss_s, sizeof loss_s, isnan(loss) ? "-" : "%.4f", loss);
        printf("  %10lld  %-20s  %10s  %8.1f %s  %d\n", (long long)c.step, when, loss_s,
               bytes >= 1 << 20 ? bytes / (1 << 20) : bytes / 1024, bytes >= 1 << 20 ? "MiB" : "KiB", workers);
        if (i == n - 1) {
            printf("trainable tensors: %d, %zu values\n", c.table.n, tt_numel(&c.table));
            config = strdup(c.config_json);
        }
        ckpt_loaded_free(&c);
    }
    free(steps);
    if (rc == PEFT_OK && config) printf("configuration (latest checkpoint):\n%s\n", config);
    free(config);
    return rc;
}
