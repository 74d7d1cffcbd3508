/* main.c - the `peft` binary: dispatches to a subcommand and turns its status into one error line
 * and an exit code (0 ok, 2 usage, 1 failure). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "cli.h"
#include "error.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"prep", cmd_prep, "tokenize JSONL documents into a sharded LMDB training dataset"},
    {"train", cmd_train, "train a PEFT method (or full fine-tuning) on a prepared dataset"},
    {"launch", cmd_launch, "run `mpirun ... peft train` and relaunch a failed job from its last checkpoint"},
    {"export", cmd_export, "write a trained run as a peft, AdapterHub or GGUF adapter, or a merged model"},
    {"tokenize", cmd_tokenize, "encode text to token ids or decode ids to text"},
    {"init-model", cmd_init_model, "write a randomly initialised model directory in Hugging Face format"},
    {"eval", cmd_eval, "mean next-token loss and perplexity of a model on token sequences"},
    {"generate", cmd_generate, "continue a prompt with a model (greedy or sampled, KV-cached)"},
    {"plot", cmd_plot, "draw a run's losses, learning rate and throughput as a PNG (gnuplot)"},
    {"inspect", cmd_inspect, "describe a model directory, a dataset, an adapter or a run directory"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: peft <command> [flags]   (peft <command> --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-12s %s\n", subcommands[i].name, subcommands[i].summary);
}

/* OpenMP threads that spin while waiting steal the core from whatever shares it (another rank, the
 * parameter server, OpenBLAS's own threads): wait passively unless the user chose otherwise. The
 * OpenMP runtime reads its environment when it loads, so the process restarts itself once. */
static void prefer_passive_waiting(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("PEFT_NO_REEXEC")) return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("PEFT_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* if the restart fails, run as we are */
}

int main(int argc, char **argv) {
    prefer_passive_waiting(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("peft %s\n", PEFT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        if (strcmp(argv[1], subcommands[i].name) != 0) continue;
        int rc = subcommands[i].run(argc - 2, argv + 2);
        args_release();
        gemm_release();
        if (rc == ARGS_HELP_SHOWN) return 0;
        if (rc != PEFT_OK) fprintf(stderr, "peft: %s\n", err_msg());
        return err_exit_code(rc);
    }
    fprintf(stderr, "peft: unknown command '%s' (see peft --help)\n", argv[1]);
    return 2;
}
