#include "train/trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/batch.h"
#include "data/sampler.h"
#include "error.h"
#include "io/file.h"
#include "train/run_signals.h"
#include "train/run_state.h"

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

/* A JSON number, or null for NaN/Inf (JSON has no such numbers). */
static void json_num(FILE *f, const char *key, const char *fmt, double v) {
    fprintf(f, ", \"%s\": ", key);
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("null", f);
}

/* One metrics.jsonl line for a logged step. */
static void log_metrics(FILE *metrics, long step, double loss, const ps_step_info *info, double tok_s, double val,
                        const ps_timing *own) {
    fprintf(metrics, "{\"step\": %ld", step);
    json_num(metrics, "loss", "%.6f", loss);
    json_num(metrics, "learning_rate", "%.6g", info->lr);
    json_num(metrics, "grad_norm", "%.6g", info->grad_norm);
    fprintf(metrics, ", \"tokens_per_second\": %.1f, \"skipped\": %s, \"compute_s\": %.4f, \"comm_s\": %.4f, \"wait_s\": %.4f",
            tok_s, info->skipped ? "true" : "false", own->compute, own->comm, own->wait);
    if (!isnan(val)) json_num(metrics, "val_loss", "%.6f", val);
    fprintf(metrics, "}\n");
    fflush(metrics);
}

/* The progress line: on a terminal redrawn in place after every step (kept when `keep`), elsewhere
 * printed only for logged steps. ETA as h:mm:ss. */
static void progress_line(bool tty, bool keep, long step, long total, double loss, const ps_step_info *info,
                          double tok_s, double eta, double val) {
    char when[32];
    long e = isfinite(eta) && eta > 0 ? (long)(eta + 0.5) : 0;
    snprintf(when, sizeof when, "%ld:%02ld:%02ld", e / 3600, e / 60 % 60, e % 60);
    char line[256];
    int n = snprintf(line, sizeof line, "step %ld/%ld  loss %.4f  lr %.3g  grad_norm %.3g  %.0f tok/s  eta %s", step,
                     total, loss, info->lr, info->grad_norm, tok_s, when);
    if (!isnan(val)) snprintf(line + (size_t)n, sizeof line - (size_t)n, "  val_loss %.4f", val);
    if (tty) fprintf(stderr, "\r\033[K%s%s", line, keep ? "\n" : "");
    else fprintf(stderr, "%s\n", line);
}

/* The first global sample of micro-batch `micro` of this worker's next update. */
static uint64_t first_sample(const data_cursor *cur, bool async, long update, int worker, int B, int accum, int micro) {
    const uint64_t g = (uint64_t)B * (uint64_t)accum;
    if (async) return (uint64_t)update * g + (uint64_t)micro * (uint64_t)B;
    return cur->samples + (uint64_t)worker * g + (uint64_t)micro * (uint64_t)B;
}

int trainer_run(const trainer_config *tc, model *m, peft_model *p, dataset *d, ps *server, trainer_result *out) {
    const dataset_info *in = dataset_get_info(d);
    const int B = tc->batch_size, T = in->seq_len;
    const uint64_t N = in->sequences[DATASET_TRAIN];
    int worker, W;
    bool async;
    ps_topology(server, &worker, &W, &async);
    const int G = B * tc->grad_accum * (async ? 1 : W);
    const bool leader = worker == 0;
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
    if (!rc) model_acts_set_fused_head(a, true); /* logits never materialised: loss and gradient per row block */
    char path[4200];
    if (!rc && leader) rc = file_join(path, sizeof path, tc->run_dir, "metrics.jsonl");
    if (!rc && leader && !(metrics = fopen(path, "a"))) rc = err_set(PEFT_EIO, "%s: cannot open for writing", path);
    if (rc) goto out;

    /* where this worker starts: a fresh run, or the state saved with the checkpoint being resumed */
    worker_state ws = {.cursor = {.seed = tc->seed, .samples = 0}};
    const void *saved;
    size_t saved_len;
    ps_resume_state(server, &saved, &saved_len);
    if (saved && (rc = worker_state_decode(saved, saved_len, "checkpoint worker state", &ws))) goto out;
    if (saved) *peft_model_dropout_rng(p) = ws.rng;
    if (ws.cursor.seed != tc->seed) {
        rc = err_set(PEFT_EUSAGE, "train: the checkpoint's data order has seed %llu, this run --seed %llu",
                     (unsigned long long)ws.cursor.seed, (unsigned long long)tc->seed);
        goto out;
    }
    long step = ps_start_step(server);
    /* asynchronous updates of this worker: worker, worker + W, ... from the resume point on */
    long update = async ? step + ((worker - step % W) + W) % W : step;

    const bool tty = leader && isatty(STDERR_FILENO);
    float *params = peft_model_params(p), *grads = peft_model_grads(p);
    peft_model_set_training(p, true);
    const double start = now();
    long long tokens_total = 0;
    const long first_step = step;
    double val = NAN, window_loss = 0.0;
    long long window_tokens = 0;
    long version;
    ps_timing own = {0};
    int skipped_in_a_row = 0;
    if ((rc = ps_pull(server, params, &version))) goto out;
    while (rc == PEFT_OK && (async ? update : step) < tc->max_steps) {
        const double t0 = now();
        peft_model_zero_grad(p);
        double loss_sum = 0.0;
        long long tokens = 0;
        for (int micro = 0; micro < tc->grad_accum && rc == PEFT_OK; micro++) {
            sampler_records(&ws.cursor, N, first_sample(&ws.cursor, async, update, worker, B, tc->grad_accum, micro), B, idx);
            if ((rc = data_batch_fill(&db, d, DATASET_TRAIN, idx, B, m->cfg.vocab_size))) break;
            double nll;
            int count;
            if ((rc = peft_model_forward(p, a, db.tokens, db.targets, db.B, db.T, &nll, &count))) break;
            peft_model_backward(p, a, 1.0f);
            loss_sum += nll;
            tokens += count;
        }
        if (rc) break;
        if (!async) sampler_advance(&ws.cursor, G);
        else ws.cursor.samples = (uint64_t)(update + W) * (uint64_t)B * (uint64_t)tc->grad_accum;
        ws.rng = *peft_model_dropout_rng(p);
        own.compute = now() - t0;
        uint8_t blob[WORKER_STATE_BYTES];
        worker_state_encode(&ws, blob);
        ps_push_msg msg = {.grad_sum = grads, .tokens = tokens, .loss_sum = loss_sum, .worker_state = blob,
                           .worker_state_len = sizeof blob, .stop_requested = run_stop_requested(), .timing = own};
        ps_step_info info;
        const double t1 = now();
        if ((rc = ps_push(server, &msg, &info))) break;
        if ((rc = ps_pull(server, params, &version))) break; /* the parameters after this step's update */
        own.comm = info.comm_seconds;     /* moving bytes (0 alone) */
        own.wait = now() - t1 - own.comm; /* the servers' update and slower workers (alone: the update) */
        step = info.step;
        update += async ? W : 1;
        tokens_total += info.tokens;
        window_loss += info.loss_sum;
        window_tokens += info.tokens;
        out->skipped = info.skipped_total;
        out->stopped = info.stop;
        skipped_in_a_row = info.skipped ? skipped_in_a_row + 1 : 0;
        if (tc->max_skipped_in_a_row > 0 && skipped_in_a_row >= tc->max_skipped_in_a_row) {
            rc = err_set(PEFT_EFORMAT, "train: %d steps in a row had a NaN or Inf gradient (steps %ld..%ld, none applied); "
                         "stopping - lower --learning-rate or check the data and the model", skipped_in_a_row,
                         step - skipped_in_a_row + 1, step);
            break;
        }
        if (!leader) {
            if (info.stop) break;
            continue;
        }
        if (info.skipped) fprintf(stderr, "peft: step %ld skipped: non-finite gradient (%ld skipped so far)\n", step, info.skipped_total);
        const bool last = (async ? update >= tc->max_steps : step >= tc->max_steps) || info.stop;
        val = NAN;
        if (tc->eval_steps > 0 && (step % tc->eval_steps == 0 || last)) {
            if ((rc = trainer_evaluate(m, p, d, B, tc->eval_batches, &val))) break;
            out->final_val_loss = val;
        }
        const bool logged = step % tc->logging_steps == 0 || last || !isnan(val);
        double elapsed = now() - start, tok_s = tokens_total / elapsed;
        double eta = elapsed / (double)(step - first_step) * (double)(tc->max_steps - step);
        if (logged) {
            double loss = window_tokens ? window_loss / (double)window_tokens : NAN;
            log_metrics(metrics, step, loss, &info, tok_s, val, &own);
            progress_line(tty, !isnan(val) || last, step, tc->max_steps, loss, &info, tok_s, eta, val);
            out->final_train_loss = loss;
            window_loss = 0.0;
            window_tokens = 0;
        } else if (tty) { /* the live line: this step's own loss */
            progress_line(tty, false, step, tc->max_steps, info.tokens ? info.loss_sum / (double)info.tokens : NAN, &info,
                          tok_s, eta, NAN);
        }
        if (info.stop) {
            const int sig = run_stop_signal();
            fprintf(stderr, "peft: stopped after step %ld (%s); checkpoint written, resume with --resume\n", step,
                    sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1"
                                                                : "a stop requested by another rank");
            break;
        }
    }
    out->steps = step;
    out->seconds = now() - start;
    out->tokens_per_second = out->seconds > 0 ? tokens_total / out->seconds : 0.0;
out:
    if (metrics) fclose(metrics);
    free(idx);
    data_batch_free(&db);
    model_acts_free(a);
    return rc;
}
