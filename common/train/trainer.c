#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/batch.h"
#include "data/sampler.h"
#include "error.h"
#include "io/file.h"
#include "store/checkpoint.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int trainer_evaluate(model *m, peft_model *p, dataset *d, int batch_size, int batches, double *loss) {
    const dataset_info *in = dataset_get_info(d);
    const uint64_t n = in->sequences[DATASET_VAL];
    *loss = NAN;
    if (n == 0) return PEFT_OK;
    model_acts *a = NULL;
    data_batch db = {0};
    uint64_t *idx = malloc((size_t)batch_size * sizeof *idx);
    int rc = idx ? data_batch_init(&db, batch_size, in->seq_len) : err_set(PEFT_ENOMEM, "out of memory");
    if (!rc) rc = model_acts_init(m, batch_size, peft_model_positions(p, in->seq_len), peft_model_prefix_len(p), &a);
    peft_model_set_training(p, false);
    double total = 0.0;
    long long count_all = 0;
    int done = 0;
    for (uint64_t i = 0; rc == PEFT_OK && i < n && (batches <= 0 || done < batches); i += (uint64_t)batch_size, done++) {
        int B = (int)(n - i < (uint64_t)batch_size ? n - i : (uint64_t)batch_size);
        for (int k = 0; k < B; k++) idx[k] = i + (uint64_t)k;
        if ((rc = data_batch_fill(&db, d, DATASET_VAL, idx, B, m->cfg.vocab_size))) break;
        double nll;
        int count;
        if ((rc = peft_model_forward(p, a, db.tokens, db.targets, db.B, db.T, &nll, &count))) break;
        total += nll;
        count_all += count;
    }
    peft_model_set_training(p, true);
    if (rc == PEFT_OK && count_all) *loss = total / (double)count_all;
    free(idx);
    data_batch_free(&db);
    model_acts_free(a);
    return rc;
}

static int save(const trainer_config *tc, peft_model *p, ps *s, const data_cursor *cur) {
    ckpt_data c = {.step = ps_steps(s), .config_json = tc->config_json, .table = peft_model_table(p),
                   .params = ps_params(s), .adam_m = ps_adam_m(s), .adam_v = ps_adam_v(s), .state = cur,
                   .state_len = sizeof *cur};
    return ckpt_save(tc->run_dir, &c, tc->save_total_limit);
}

static void log_line(FILE *metrics, bool tty, long step, long total, double loss, const ps_step_info *info,
                     double tok_s, double eta, double val) {
    if (metrics) {
        fprintf(metrics, "{\"step\": %ld, \"loss\": %.6f, \"learning_rate\": %.6g, \"grad_norm\": %.6g, "
                "\"tokens_per_second\": %.1f, \"skipped\": %s",
                step, loss, info->lr, info->grad_norm, tok_s, info->skipped ? "true" : "false");
        if (!isnan(val)) fprintf(metrics, ", \"val_loss\": %.6f", val);
        fprintf(metrics, "}\n");
        fflush(metrics);
    }
    char line[256];
    int n = snprintf(line, sizeof line, "step %ld/%ld  loss %.4f  lr %.3g  grad_norm %.3g  %.0f tok/s  eta %.0fs",
                     step, total, loss, info->lr, info->grad_norm, tok_s, eta);
    if (!isnan(val)) snprintf(line + n, sizeof line - (size_t)n, "  val_loss %.4f", val);
    if (tty) fprintf(stderr, "\r\033[K%s%s", line, isnan(val) && step < total ? "" : "\n");
    else fprintf(stderr, "%s\n", line);
}

int trainer_run(const trainer_config *tc, model *m, peft_model *p, dataset *d, ps *server, trainer_result *out) {
    const dataset_info *in = dataset_get_info(d);
    const int B = tc->batch_size, G = tc->batch_size * tc->grad_accum, T = in->seq_len;
    const uint64_t N = in->sequences[DATASET_TRAIN];
    memset(out, 0, sizeof *out);
    out->final_train_loss = out->final_val_loss = NAN;
    if (N == 0) return err_set(PEFT_EUSAGE, "the dataset has no training sequences");
    model_acts *a = NULL;
    data_batch db = {0};
    uint64_t *idx = malloc((size_t)B * sizeof *idx);
    FILE *metrics = NULL;
    int rc = idx ? PEFT_OK : err_set(PEFT_ENOMEM, "out of memory");
    if (!rc) rc = peft_model_reserve(p, B, T);
    if (!rc) rc = data_batch_init(&db, B, T);
    if (!rc) rc = model_acts_init(m, B, peft_model_positions(p, T), peft_model_prefix_len(p), &a);
    char path[4200];
    if (!rc) rc = file_join(path, sizeof path, tc->run_dir, "metrics.jsonl");
    if (!rc && !(metrics = fopen(path, "a"))) rc = err_set(PEFT_EIO, "%s: cannot open for writing", path);
    if (rc) goto out;

    const bool tty = isatty(STDERR_FILENO);
    data_cursor cur = {.seed = tc->seed, .samples = 0};
    float *params = peft_model_params(p), *grads = peft_model_grads(p);
    peft_model_set_training(p, true);
    const double start = now();
    long long tokens_total = 0;
    double val = NAN, window_loss = 0.0;
    long long window_tokens = 0;
    while (rc == PEFT_OK && ps_steps(server) + ps_skipped(server) < tc->max_steps) {
        long version;
        if ((rc = ps_pull(server, params, &version))) break;
        peft_model_zero_grad(p);
        double loss_sum = 0.0;
        long long tokens = 0;
        for (int micro = 0; micro < tc->grad_accum && rc == PEFT_OK; micro++) {
            uint64_t first = cur.samples + (uint64_t)micro * (uint64_t)B;
            sampler_records(&cur, N, first, B, idx);
            if ((rc = data_batch_fill(&db, d, DATASET_TRAIN, idx, B, m->cfg.vocab_size))) break;
            double nll;
            int count;
            if ((rc = peft_model_forward(p, a, db.tokens, db.targets, db.B, db.T, &nll, &count))) break;
            peft_model_backward(p, a, 1.0f);
            loss_sum += nll;
            tokens += count;
        }
        if (rc) break;
        sampler_advance(&cur, G);
        ps_step_info info;
        if ((rc = ps_push(server, grads, tokens, &info))) break;
        tokens_total += tokens;
        window_loss += loss_sum;
        window_tokens += tokens;
        const long step = ps_steps(server) + ps_skipped(server);
        if (info.skipped) fprintf(stderr, "peft: step %ld skipped: non-finite gradient (%ld skipped so far)\n", step, ps_skipped(server));
        const bool last = step >= tc->max_steps;
        const bool do_eval = tc->eval_steps > 0 && (step % tc->eval_steps == 0 || last);
        const bool do_save = (tc->save_steps > 0 && step % tc->save_steps == 0) || last;
        /* evaluation and checkpoints see the parameters after this step's update */
        if ((do_eval || do_save) && (rc = ps_pull(server, params, &version))) break;
        val = NAN;
        if (do_eval) {
            if ((rc = trainer_evaluate(m, p, d, B, tc->eval_batches, &val))) break;
            out->final_val_loss = val;
        }
        if (step % tc->logging_steps == 0 || last || !isnan(val)) {
            double elapsed = now() - start, tok_s = tokens_total / elapsed;
            double eta = elapsed / (double)step * (double)(tc->max_steps - step);
            double loss = window_tokens ? window_loss / (double)window_tokens : NAN;
            log_line(metrics, tty, step, tc->max_steps, loss, &info, tok_s, eta, val);
            out->final_train_loss = loss;
            window_loss = 0.0;
            window_tokens = 0;
        }
        if (do_save) rc = save(tc, p, server, &cur);
    }
    out->steps = ps_steps(server);
    out->skipped = ps_skipped(server);
    out->seconds = now() - start;
    out->tokens_per_second = out->seconds > 0 ? tokens_total / out->seconds : 0.0;
out:
    if (metrics) fclose(metrics);
    free(idx);
    data_batch_free(&db);
    model_acts_free(a);
    return rc;
}
