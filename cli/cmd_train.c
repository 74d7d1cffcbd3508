/* cmd_train.c - `peft train`: flags, then the role of this process. Alone (or `mpirun -np 1`) it
 * trains with the parameter server in its own process; under `mpirun -np N` the first
 * --num-servers ranks run server_run() (server/server.h) and the rest train as workers through
 * ps_client (worker/ps_client.h). */
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "data/dataset.h"
#include "error.h"
#include "export/adapter_load.h"
#include "io/file.h"
#include "io/json.h"
#include "model/model.h"
#include "peft/peft.h"
#include "peft/peft_config_json.h"
#include "tokenizer/tokenizer.h"
#include "ps_client.h"
#include "server.h"
#include "store/checkpoint.h"
#include "train/ps.h"
#include "train/run_signals.h"
#include "train/trainer.h"
#include "transport.h"

typedef struct train_flags {
    const char *model, *data, *out, *method, *scheduler;
    float lr, max_grad_norm, epochs;
    double weight_decay, beta1, beta2, eps; /* doubles, as torch's AdamW hyperparameters are */
    int batch, accum, warmup, save_total_limit, eval_batches;
    int max_steps, logging_steps, eval_steps, save_steps;
    uint64_t seed;
    int num_servers, staleness, resume_step, max_skipped;
    const char *adapter;     /* continue training this peft/AdapterHub adapter */
    bool method_given;
    float comm_timeout;
    bool resume;
} train_flags;

static char *run_config_json(const train_flags *f, const peft_config *pc, const model_opts *mo, long total_steps) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "peft-run");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "model", f->model);
    cJSON_AddStringToObject(o, "data", f->data);
    cJSON_AddStringToObject(o, "base_quantize", mo->quantize == MODEL_QUANT_NF4 ? "nf4" : "none");
    cJSON_AddBoolToObject(o, "base_bf16", mo->bf16);
    peft_config_to_json(pc, o);
    cJSON_AddNumberToObject(o, "learning_rate", f->lr);
    cJSON_AddStringToObject(o, "lr_scheduler_type", f->scheduler);
    cJSON_AddNumberToObject(o, "warmup_steps", f->warmup);
    cJSON_AddNumberToObject(o, "weight_decay", f->weight_decay);
    cJSON_AddNumberToObject(o, "max_grad_norm", f->max_grad_norm);
    cJSON_AddNumberToObject(o, "per_device_train_batch_size", f->batch);
    cJSON_AddNumberToObject(o, "gradient_accumulation_steps", f->accum);
    cJSON_AddNumberToObject(o, "max_steps", (double)total_steps);
    cJSON_AddNumberToObject(o, "seed", (double)f->seed);
    char *s = json_print_pretty(o, false);
    cJSON_Delete(o);
    return s;
}

/* The run directory for a fresh run (absent or without checkpoints) or a resumed one (some).
 * Creates nothing: a refused run leaves no directory behind. */
static int check_run_dir(const train_flags *f) {
    int64_t *steps = NULL;
    int n = 0;
    if (file_exists(f->out)) PEFT_TRY(ckpt_list(f->out, &steps, &n));
    free(steps);
    if (!f->resume && n > 0)
        return err_set(PEFT_EUSAGE, "train: %s already holds a run with %d checkpoint%s (--resume to continue it, or a new --out)",
                       f->out, n, n == 1 ? "" : "s");
    if (f->resume && n == 0) return err_set(PEFT_EUSAGE, "train: --resume: %s holds no checkpoint", f->out);
    return PEFT_OK;
}

static ps_config make_ps_config(const train_flags *f, lr_schedule_type sched, long steps, const char *config_json) {
    ps_config c = {.adam = {.beta1 = f->beta1, .beta2 = f->beta2, .eps = f->eps, .weight_decay = f->weight_decay},
                   .learning_rate = f->lr, .schedule = sched, .warmup_steps = f->warmup, .total_steps = steps,
                   .max_grad_norm = f->max_grad_norm, .run_dir = f->out, .config_json = config_json,
                   .save_steps = f->save_steps, .save_total_limit = f->save_total_limit};
    return c;
}

/* A worker (or the only process): model, data, method, then the training loop. tr is NULL alone. */
static int train_worker(const train_flags *f, peft_config *pc, lr_schedule_type sched, gemm_backend be,
                        const model_opts *mo, transport *tr, bool dry_run) {
    adapter_file *af = NULL;
    model *m = NULL;
    tokenizer *tk = NULL;
    dataset *d = NULL;
    peft_model *p = NULL;
    ps *server = NULL;
    char *config_json = NULL;
    ckpt_loaded resume = {0};
    const bool leader = !tr || tr->rank == tr->num_servers;
    int rc;
    if ((rc = model_load_with(f->model, be, mo, &m))) goto out;
    if ((rc = model_tokenizer_load(f->model, &tk))) goto out;
    if ((rc = dataset_open(f->data, &d))) goto out;
    if ((rc = check_dataset_fits_model(d, f->data, tk, m->cfg.vocab_size, f->model))) goto out;
    if (f->adapter) {
        if ((rc = adapter_open(f->adapter, m, &af))) goto out;
        const char *am = peft_method_name(adapter_config(af)->method);
        if (f->method_given && strcmp(f->method, am)) {
            rc = err_set(PEFT_EUSAGE, "train: --method %s, but the --adapter %s holds a %s adapter", f->method, f->adapter, am);
            goto out;
        }
        *pc = *adapter_config(af);
        pc->seed = f->seed;
    }
    const dataset_info *in = dataset_get_info(d);
    const bool virt = pc->method == PEFT_PROMPT || pc->method == PEFT_PREFIX;
    if (m->cfg.arch == ARCH_GPT2 && in->seq_len + pc->num_virtual_tokens * virt > m->cfg.max_positions) {
        rc = err_set(PEFT_EUSAGE, "train: %d tokens per sequence%s exceed the model's %d positions", in->seq_len,
                     virt ? " plus the virtual tokens" : "", m->cfg.max_positions);
        goto out;
    }
    if ((rc = af ? adapter_apply(af, m, pc, tk, &p) : peft_model_create(m, pc, tk, &p))) goto out;
    long long trainable, total;
    peft_model_counts(p, &trainable, &total);
    if (leader)
        printf("trainable params: %lld || all params: %lld || trainable%%: %.4f\n", trainable, total,
               100.0 * (double)trainable / (double)total);
    if (dry_run) goto out;
    const int W = tr ? tr->size - tr->num_servers : 1;
    const long G = (long)f->batch * f->accum * (f->staleness > 0 ? 1 : W);
    long steps = f->max_steps > 0 ? f->max_steps
                                  : (long)ceil(f->epochs * (double)in->sequences[DATASET_TRAIN] / (double)G);
    if (steps <= 0) {
        rc = err_set(PEFT_EUSAGE, "train: nothing to do (0 steps)");
        goto out;
    }
    config_json = run_config_json(f, pc, mo, steps);
    if ((rc = file_mkdirs(f->out))) goto out; /* metrics.jsonl (and, alone, the checkpoints) */
    if (tr) {
        rc = ps_client_create(tr, peft_model_table(p), peft_model_params(p), config_json, steps, f->staleness, &server);
    } else {
        if (f->resume) {
            if ((rc = ckpt_load(f->out, f->resume_step, &resume))) goto out;
            if (tt_hash(&resume.table) != tt_hash(peft_model_table(p))) {
                rc = err_set(PEFT_EMISMATCH, "train: %s/" CKPT_FILE_NAME " step %lld holds other trainable tensors than "
                             "this run builds (another --method, model or method flags?)", f->out, (long long)resume.step);
                goto out;
            }
            fprintf(stderr, "peft: resuming from checkpoint %lld of %s\n", (long long)resume.step, f->out);
        }
        ps_config psc = make_ps_config(f, sched, steps, config_json);
        rc = ps_local_create(peft_model_table(p), peft_model_params(p), &psc, f->resume ? &resume : NULL, &server);
    }
    if (rc) goto out;
    if (leader)
        printf("method %s on %s: %ld steps of %ld sequences x %d tokens on %d worker%s (%llu training sequences, %.2f epochs)\n",
               peft_method_name(pc->method), f->model, steps, G, in->seq_len, W, W == 1 ? "" : "s",
               (unsigned long long)in->sequences[DATASET_TRAIN], (double)steps * G / (double)in->sequences[DATASET_TRAIN]);
    trainer_config tc = {.run_dir = f->out, .batch_size = f->batch, .grad_accum = f->accum, .max_steps = steps,
                         .logging_steps = f->logging_steps, .eval_steps = f->eval_steps > 0 ? f->eval_steps : steps,
                         .seed = f->seed, .eval_batches = f->eval_batches,
                         .max_skipped_in_a_row = f->max_skipped};
    trainer_result res;
    if ((rc = trainer_run(&tc, m, p, d, server, &res))) goto out;
    if (leader) {
        printf("%s: %ld steps (%ld skipped) in %.1f s, %.0f tokens/s; final train loss %.4f, validation loss %.4f\n",
               res.stopped ? "stopped" : "done", res.steps, res.skipped, res.seconds, res.tokens_per_second,
               res.final_train_loss, res.final_val_loss);
        printf("checkpoints in %s/checkpoints.lmdb, metrics in %s/metrics.jsonl\n", f->out, f->out);
    }
out:
    ps_free(server);
    ckpt_loaded_free(&resume);
    peft_model_free(p);
    adapter_close(af);
    dataset_close(d);
    tokenizer_free(tk);
    model_free(m);
    free(config_json);
    return rc;
}

int cmd_train(int argc, char **argv) {
    train_flags f = {.method = "lora", .scheduler = "linear", .lr = 5e-5f, .max_grad_norm = 1.0f, .epochs = 3.0f,
                     .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .batch = 8, .accum = 1, .max_steps = -1,
                     .logging_steps = 10, .eval_steps = 0, .save_steps = 500, .seed = 42, .eval_batches = 0,
                     .num_servers = 1, .staleness = 0, .max_skipped = 10, .comm_timeout = 1800.0f, .resume_step = -1};
    peft_config pc;
    peft_config_defaults(&pc, PEFT_LORA);
    bool prefix_projection = false, use_rslora = false, lora_b_bias = false, dry_run = false;
    compute_flags cf = {0};
    arg_spec specs[] = {
        {"--model", ARG_STRING, &f.model, "DIR", "base model directory (Hugging Face format)", ARG_REQUIRED, false},
        {"--data", ARG_STRING, &f.data, "DATA_DIR", "dataset from peft prep", ARG_REQUIRED, false},
        {"--out", ARG_STRING, &f.out, "RUN_DIR", "run directory: checkpoints.lmdb, metrics.jsonl", ARG_REQUIRED, false},
        {"--method", ARG_STRING, &f.method, "M", "full|lora|qlora|dora|ia3|prompt|prefix|houlsby|bapna|pfeiffer|parallel|io", 0, false},
        {"--adapter", ARG_STRING, &f.adapter, "DIR", "continue training a peft or AdapterHub adapter (its config replaces the method flags)", 0, false},
        {"--r", ARG_INT, &pc.r, "N", "LoRA/DoRA rank", 0, false},
        {"--lora-alpha", ARG_FLOAT, &pc.lora_alpha, "A", "LoRA scaling numerator (s = alpha/r)", 0, false},
        {"--lora-dropout", ARG_FLOAT, &pc.lora_dropout, "P", "dropout on the LoRA path's input", 0, false},
        {"--use-rslora", ARG_BOOL, &use_rslora, NULL, "s = alpha/sqrt(r)", 0, false},
        {"--lora-bias", ARG_STRING, &pc.lora_bias, "none|lora_only|all", "base biases that train with LoRA", 0, false},
        {"--lora-b-bias", ARG_BOOL, &lora_b_bias, NULL, "train a bias on lora_B (peft's lora_bias=True)", 0, false},
        {"--target-modules", ARG_STRING, &pc.target_modules, "LIST", "comma-separated module names (peft's rule)", 0, false},
        {"--layers-to-transform", ARG_STRING, &pc.layers_to_transform, "LIST", "comma-separated layer indices", 0, false},
        {"--feedforward-modules", ARG_STRING, &pc.feedforward_modules, "LIST", "ia3: modules scaled at their input", 0, false},
        {"--num-virtual-tokens", ARG_INT, &pc.num_virtual_tokens, "N", "prompt/prefix length", 0, false},
        {"--prompt-init-text", ARG_STRING, &pc.prompt_init_text, "TEXT", "prompt: initialise from this text", 0, false},
        {"--prefix-projection", ARG_BOOL, &prefix_projection, NULL, "prefix: train through an MLP", 0, false},
        {"--encoder-hidden-size", ARG_INT, &pc.encoder_hidden_size, "N", "prefix MLP width (0: token dim)", 0, false},
        {"--reduction-factor", ARG_FLOAT, &pc.reduction_factor, "F", "adapter bottleneck = hidden / F (0: preset)", 0, false},
        {"--non-linearity", ARG_STRING, &pc.non_linearity, "F", "adapter activation: relu|swish|gelu|gelu_new", 0, false},
        {"--learning-rate", ARG_FLOAT, &f.lr, "LR", "peak learning rate", 0, false},
        {"--per-device-train-batch-size", ARG_INT, &f.batch, "B", "sequences per forward pass", 0, false},
        {"--gradient-accumulation-steps", ARG_INT, &f.accum, "N", "forward passes per optimizer step", 0, false},
        {"--max-steps", ARG_INT, &f.max_steps, "N", "optimizer steps (overrides --num-train-epochs)", 0, false},
        {"--num-train-epochs", ARG_FLOAT, &f.epochs, "E", "epochs over the training split", 0, false},
        {"--warmup-steps", ARG_INT, &f.warmup, "N", "linear warmup steps", 0, false},
        {"--lr-scheduler-type", ARG_STRING, &f.scheduler, "S", "linear|cosine|constant|constant_with_warmup", 0, false},
        {"--weight-decay", ARG_DOUBLE, &f.weight_decay, "W", "AdamW decoupled weight decay", 0, false},
        {"--adam-beta1", ARG_DOUBLE, &f.beta1, "B1", "AdamW beta1", 0, false},
        {"--adam-beta2", ARG_DOUBLE, &f.beta2, "B2", "AdamW beta2", 0, false},
        {"--adam-epsilon", ARG_DOUBLE, &f.eps, "EPS", "AdamW epsilon", 0, false},
        {"--max-grad-norm", ARG_FLOAT, &f.max_grad_norm, "X", "global-norm clipping (0: off)", 0, false},
        {"--seed", ARG_U64, &f.seed, "S", "seed of initialisation, data order and dropout", 0, false},
        {"--logging-steps", ARG_INT, &f.logging_steps, "N", "log every N steps", 0, false},
        {"--eval-steps", ARG_INT, &f.eval_steps, "N", "validation loss every N steps (0: at the end only)", 0, false},
        {"--eval-batches", ARG_INT, &f.eval_batches, "N", "validation batches per evaluation (0: all)", 0, false},
        {"--save-steps", ARG_INT, &f.save_steps, "N", "checkpoint every N steps (and at the end)", 0, false},
        {"--save-total-limit", ARG_INT, &f.save_total_limit, "N", "keep only the newest N checkpoints (0: all)", 0, false},
        {"--resume", ARG_BOOL, &f.resume, NULL, "continue the run in --out from its latest checkpoint", 0, false},
        {"--resume-from-checkpoint", ARG_INT, &f.resume_step, "STEP", "continue the run in --out from checkpoint STEP", 0, false},
        {"--num-servers", ARG_INT, &f.num_servers, "S", "under mpirun: ranks 0..S-1 are parameter servers", 0, false},
        {"--staleness", ARG_INT, &f.staleness, "K", "0: synchronous; K > 0: asynchronous, at most K steps ahead", 0, false},
        {"--comm-timeout", ARG_FLOAT, &f.comm_timeout, "SEC", "end the job when a rank is silent this long", 0, false},
        {"--max-skipped-steps", ARG_INT, &f.max_skipped, "N", "end the run after N steps in a row with NaN/Inf gradients (0: never)", 0, false},
        {"--dry-run", ARG_BOOL, &dry_run, NULL, "build the method, print its parameter counts, train nothing", 0, false},
        COMPUTE_FLAG_SPECS(cf),
    };
    const arg_command cmd = {"train", "--model DIR --data DATA_DIR --out RUN_DIR --method M [method flags] [training flags]",
                             "Trains a PEFT method (or full fine-tuning). Alone it trains in one process; under\n"
                             "`mpirun -np N` ranks 0..S-1 are parameter servers and the rest workers. Flags follow\n"
                             "Hugging Face's TrainingArguments and peft/adapters configs. SIGINT/SIGTERM finish the\n"
                             "step, write a checkpoint and exit 0; --resume continues from it."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    PEFT_TRY(peft_method_parse(f.method, &pc.method));
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        if (!strcmp(specs[i].name, "--method")) f.method_given = specs[i].seen;
    pc.use_rslora = use_rslora;
    pc.lora_b_bias = lora_b_bias;
    pc.prefix_projection = prefix_projection;
    pc.seed = f.seed;
    lr_schedule_type sched;
    PEFT_TRY(schedule_parse(f.scheduler, &sched));
    if (f.batch <= 0 || f.accum <= 0) return err_set(PEFT_EUSAGE, "train: batch size and accumulation steps must be positive");
    if (f.logging_steps <= 0) return err_set(PEFT_EUSAGE, "train: --logging-steps must be positive");
    if (!(f.lr > 0)) return err_set(PEFT_EUSAGE, "train: --learning-rate must be positive");
    if (f.max_steps == 0 || f.max_steps < -1)
        return err_set(PEFT_EUSAGE, "train: --max-steps must be positive, or -1 to train --num-train-epochs, got %d", f.max_steps);
    if (f.max_steps == -1 && !(f.epochs > 0))
        return err_set(PEFT_EUSAGE, "train: --num-train-epochs must be positive (or give --max-steps)");
    if (f.warmup < 0) return err_set(PEFT_EUSAGE, "train: --warmup-steps must be 0 or positive, got %d", f.warmup);
    if (!(f.weight_decay >= 0)) return err_set(PEFT_EUSAGE, "train: --weight-decay must be 0 or positive");
    if (!(f.beta1 >= 0 && f.beta1 < 1) || !(f.beta2 >= 0 && f.beta2 < 1) || !(f.eps > 0))
        return err_set(PEFT_EUSAGE, "train: --adam-beta1 and --adam-beta2 must be in [0, 1), --adam-epsilon positive");
    if (!(f.max_grad_norm >= 0)) return err_set(PEFT_EUSAGE, "train: --max-grad-norm must be 0 (off) or positive");
    if (f.save_steps < 0 || f.eval_steps < 0 || f.eval_batches < 0 || f.save_total_limit < 0)
        return err_set(PEFT_EUSAGE, "train: --save-steps, --eval-steps, --eval-batches and --save-total-limit must be 0 or positive");
    if (f.max_skipped < 0) return err_set(PEFT_EUSAGE, "train: --max-skipped-steps must be 0 (never) or positive");
    if (f.num_servers < 1) return err_set(PEFT_EUSAGE, "train: --num-servers must be at least 1");
    if (f.staleness < 0) return err_set(PEFT_EUSAGE, "train: --staleness must be 0 (synchronous) or positive");
    if (!(f.comm_timeout > 0)) return err_set(PEFT_EUSAGE, "train: --comm-timeout must be positive seconds");
    if (f.resume_step < -1) return err_set(PEFT_EUSAGE, "train: --resume-from-checkpoint must be a step >= 0");
    if (f.resume_step >= 0) f.resume = true;
    model_opts mo;
    PEFT_TRY(compute_model_opts(&cf, peft_method_is_qlora(f.method), &mo));

    run_signals_install(); /* before any thread starts: compute threads must not take the signals */
    if (!transport_launched_by_mpirun()) {
        gemm_backend be;
        PEFT_TRY(compute_setup(&cf, &be));
        if (!dry_run) PEFT_TRY(check_run_dir(&f));
        return train_worker(&f, &pc, sched, be, &mo, NULL, dry_run);
    }
    transport tr;
    PEFT_TRY(transport_init(&tr, f.num_servers, f.comm_timeout));
    if (tr.size == 1) { /* mpirun -np 1: alone, through the same code as without mpirun */
        gemm_backend be;
        rc = compute_setup(&cf, &be);
        if (!rc && !dry_run) rc = check_run_dir(&f);
        if (!rc) rc = train_worker(&f, &pc, sched, be, &mo, NULL, dry_run);
        transport_finalize(&tr);
        return rc;
    }
    if (tr.size - f.num_servers < 1) {
        rc = err_set(PEFT_EUSAGE, "train: mpirun -np %d with --num-servers %d leaves no worker rank (use -np %d or more)",
                     tr.size, f.num_servers, f.num_servers + 1);
        transport_finalize(&tr);
        if (tr.rank != 0) exit(err_exit_code(rc)); /* one message for the job, from rank 0 */
        return rc;
    }
    if (tr.rank < f.num_servers) {
        server_config sc = {.ps = make_ps_config(&f, sched, 0, NULL), .staleness = f.staleness,
                            .resume_step = f.resume ? f.resume_step : -2};
        if (tr.rank == 0 && !dry_run) sc.precheck_rc = check_run_dir(&f);
        gemm_set_threads(1);
        rc = dry_run ? PEFT_OK : server_run(&tr, &sc);
    } else {
        /* ranks share the node's cores: split them among the workers on it unless --threads says */
        const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        int local_ranks = local ? atoi(local) : 1, local_workers = local_ranks - (f.num_servers < local_ranks ? f.num_servers : local_ranks - 1);
        if (cf.threads == 0 && local_workers > 1) {
            cf.threads = omp_get_num_procs() / local_workers;
            if (cf.threads < 1) cf.threads = 1;
        }
        gemm_backend be;
        rc = compute_setup(&cf, &be);
        if (!rc) rc = train_worker(&f, &pc, sched, be, &mo, &tr, dry_run);
    }
    if (rc) {
        fprintf(stderr, "peft: rank %d (%s): %s\n", tr.rank, tr.host, err_msg());
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, err_exit_code(rc));
    }
    transport_finalize(&tr);
    return rc;
}
