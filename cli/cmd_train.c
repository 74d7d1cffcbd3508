/* cmd_train.c - `peft train`: one process trains a PEFT method on a prepared dataset. */
#include <math.h>
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
#include "train/ps.h"
#include "train/trainer.h"

typedef struct train_flags {
    const char *model, *data, *out, *method, *scheduler;
    float lr, max_grad_norm, epochs;
    double weight_decay, beta1, beta2, eps; /* doubles, as torch's AdamW hyperparameters are */
    int batch, accum, warmup, save_total_limit, eval_batches;
    int max_steps, logging_steps, eval_steps, save_steps;
    uint64_t seed;
} train_flags;

static char *run_config_json(const train_flags *f, const peft_config *pc, const model_opts *mo, long total_steps) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "peft-run");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "model", f->model);
    cJSON_AddStringToObject(o, "data", f->data);
    peft_config_to_json(pc, o);
    cJSON_AddStringToObject(o, "base_quantize", mo->quantize == MODEL_QUANT_NF4 ? "nf4" : "none");
    cJSON_AddBoolToObject(o, "base_bf16", mo->bf16);
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

int cmd_train(int argc, char **argv) {
    train_flags f = {.method = "lora", .scheduler = "linear", .lr = 5e-5f, .max_grad_norm = 1.0f, .epochs = 3.0f,
                     .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .batch = 8, .accum = 1, .max_steps = -1,
                     .logging_steps = 10, .eval_steps = 0, .save_steps = 500, .seed = 42, .eval_batches = 0};
    peft_config pc;
    peft_config_defaults(&pc, PEFT_LORA);
    bool prefix_projection = false, use_rslora = false, lora_b_bias = false, dry_run = false;
    const char *adapter = NULL;
    compute_flags cf = {0};
    arg_spec specs[] = {
        {"--model", ARG_STRING, &f.model, "DIR", "base model directory (Hugging Face format)", ARG_REQUIRED, false},
        {"--data", ARG_STRING, &f.data, "DATA_DIR", "dataset from peft prep", ARG_REQUIRED, false},
        {"--out", ARG_STRING, &f.out, "RUN_DIR", "run directory: checkpoints.lmdb, metrics.jsonl", ARG_REQUIRED, false},
        {"--method", ARG_STRING, &f.method, "M", "full|lora|qlora|dora|ia3|prompt|prefix|houlsby|bapna|pfeiffer|parallel|io", 0, false},
        {"--adapter", ARG_STRING, &adapter, "DIR", "continue training a peft or AdapterHub adapter (its config replaces the method flags)", 0, false},
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
        {"--dry-run", ARG_BOOL, &dry_run, NULL, "build the method, print its parameter counts, train nothing", 0, false},
        COMPUTE_FLAG_SPECS(cf),
    };
    const arg_command cmd = {"train", "--model DIR --data DATA_DIR --out RUN_DIR --method M [method flags] [training flags]",
                             "Trains a PEFT method (or full fine-tuning) in one process. Flags follow Hugging Face's\n"
                             "TrainingArguments and peft/adapters configs."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    PEFT_TRY(peft_method_parse(f.method, &pc.method));
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
    gemm_backend be;
    PEFT_TRY(compute_setup(&cf, &be));
    model_opts mo;
    PEFT_TRY(compute_model_opts(&cf, peft_method_is_qlora(f.method), &mo));

    model *m = NULL;
    tokenizer *tk = NULL;
    dataset *d = NULL;
    peft_model *p = NULL;
    adapter_file *af = NULL;
    ps *server = NULL;
    char *config_json = NULL;
    if ((rc = model_load_with(f.model, be, &mo, &m))) goto out;
    if ((rc = model_tokenizer_load(f.model, &tk))) goto out;
    if ((rc = dataset_open(f.data, &d))) goto out;
    if ((rc = check_dataset_fits_model(d, f.data, tk, m->cfg.vocab_size, f.model))) goto out;
    if (adapter) {
        if ((rc = adapter_open(adapter, m, &af))) goto out;
        const char *am = peft_method_name(adapter_config(af)->method);
        for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
            if (!strcmp(specs[i].name, "--method") && specs[i].seen && strcmp(f.method, am)) {
                rc = err_set(PEFT_EUSAGE, "train: --method %s, but the --adapter %s holds a %s adapter", f.method, adapter, am);
                goto out;
            }
        pc = *adapter_config(af);
        pc.seed = f.seed;
    }
    const dataset_info *in = dataset_get_info(d);
    if (m->cfg.arch == ARCH_GPT2 && in->seq_len + pc.num_virtual_tokens * (pc.method == PEFT_PROMPT || pc.method == PEFT_PREFIX) >
                                        m->cfg.max_positions) {
        rc = err_set(PEFT_EUSAGE, "train: %d tokens per sequence%s exceed the model's %d positions", in->seq_len,
                     pc.method == PEFT_PROMPT || pc.method == PEFT_PREFIX ? " plus the virtual tokens" : "",
                     m->cfg.max_positions);
        goto out;
    }
    if ((rc = af ? adapter_apply(af, m, &pc, tk, &p) : peft_model_create(m, &pc, tk, &p))) goto out;
    long long trainable, total;
    peft_model_counts(p, &trainable, &total);
    printf("trainable params: %lld || all params: %lld || trainable%%: %.4f\n", trainable, total,
           100.0 * (double)trainable / (double)total);
    if (dry_run) goto out;
    const long G = (long)f.batch * f.accum;
    long steps = f.max_steps > 0 ? f.max_steps
                                 : (long)ceil(f.epochs * (double)in->sequences[DATASET_TRAIN] / (double)G);
    if (steps <= 0) {
        rc = err_set(PEFT_EUSAGE, "train: nothing to do (0 steps)");
        goto out;
    }
    if ((rc = file_mkdirs(f.out))) goto out;
    char ckpt[4200];
    file_join(ckpt, sizeof ckpt, f.out, "checkpoints.lmdb");
    if (file_exists(ckpt)) {
        rc = err_set(PEFT_EUSAGE, "train: %s already holds a run (choose a new --out)", f.out);
        goto out;
    }
    config_json = run_config_json(&f, &pc, &mo, steps);
    ps_config psc = {.adam = {.beta1 = f.beta1, .beta2 = f.beta2, .eps = f.eps, .weight_decay = f.weight_decay},
                     .learning_rate = f.lr, .schedule = sched, .warmup_steps = f.warmup, .total_steps = steps,
                     .max_grad_norm = f.max_grad_norm};
    if ((rc = ps_local_create(peft_model_table(p), peft_model_params(p), &psc, &server))) goto out;
    printf("method %s on %s: %ld steps of %ld sequences x %d tokens (%llu training sequences, %.2f epochs)\n",
           peft_method_name(pc.method), f.model, steps, G, in->seq_len,
           (unsigned long long)in->sequences[DATASET_TRAIN], (double)steps * G / (double)in->sequences[DATASET_TRAIN]);
    trainer_config tc = {.run_dir = f.out, .config_json = config_json, .batch_size = f.batch, .grad_accum = f.accum,
                         .max_steps = steps, .logging_steps = f.logging_steps,
                         .eval_steps = f.eval_steps > 0 ? f.eval_steps : steps, .save_steps = f.save_steps,
                         .save_total_limit = f.save_total_limit, .seed = f.seed, .eval_batches = f.eval_batches};
    trainer_result res;
    if ((rc = trainer_run(&tc, m, p, d, server, &res))) goto out;
    printf("done: %ld steps (%ld skipped) in %.1f s, %.0f tokens/s; final train loss %.4f, validation loss %.4f\n",
           res.steps, res.skipped, res.seconds, res.tokens_per_second, res.final_train_loss, res.final_val_loss);
    printf("checkpoints in %s/checkpoints.lmdb, metrics in %s/metrics.jsonl\n", f.out, f.out);
out:
    ps_free(server);
    peft_model_free(p);
    adapter_close(af);
    dataset_close(d);
    tokenizer_free(tk);
    model_free(m);
    free(config_json);
    return rc;
}
