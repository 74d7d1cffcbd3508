/*
 * cmd_launch.c - `peft launch`: runs `mpirun ... peft train ...` and, when the job fails (a rank
 * died, a host was lost, a deadline passed), relaunches it with --resume from the last checkpoint,
 * up to --max-restarts times, as torchrun does. Another --np on a later launch of the same --out is
 * how a user changes the worker count mid-run (the data order is global, so it continues).
 *
 * SIGINT/SIGTERM to the launcher become SIGUSR1 to mpirun, which forwards it to every rank without
 * killing anything: the ranks finish the step, write a checkpoint and exit 0; no restart follows.
 * (mpirun itself answers SIGINT/SIGTERM with SIGTERM and, one second later, SIGKILL to the ranks.)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "store/checkpoint.h"

static volatile sig_atomic_t stop_signal;
static volatile pid_t child;

static void forward(int sig) {
    stop_signal = sig;
    if (child > 0) kill(child, SIGUSR1);
}

/* The value of `flag` among the train arguments (NULL when absent). */
static const char *train_flag(int argc, char **argv, const char *flag) {
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], flag)) return argv[i + 1];
    return NULL;
}

static bool has_flag(int argc, char **argv, const char *flag) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], flag)) return true;
    return false;
}

static int run_once(char **args) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return err_set(PEFT_EIO, "launch: fork failed: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0); /* a terminal's Ctrl-C reaches the launcher only, which passes it on once */
        execvp(args[0], args);
        fprintf(stderr, "peft: launch: cannot run %s: %s\n", args[0], strerror(errno));
        _exit(127);
    }
    child = pid;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return err_set(PEFT_EIO, "launch: waitpid failed: %s", strerror(errno));
    child = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int cmd_launch(int argc, char **argv) {
    int np = 0, max_restarts = 3;
    const char *hostfile = NULL, *mpirun = "mpirun", *extra = NULL;
    int sep = argc;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            sep = i;
            break;
        }
    arg_spec specs[] = {
        {"--np", ARG_INT, &np, "N", "ranks: --num-servers parameter servers plus the workers", ARG_REQUIRED, false},
        {"--max-restarts", ARG_INT, &max_restarts, "K", "relaunch a failed job with --resume at most K times", 0, false},
        {"--hostfile", ARG_STRING, &hostfile, "FILE", "passed to mpirun: the hosts and their slots", 0, false},
        {"--mpirun", ARG_STRING, &mpirun, "PATH", "the mpirun to use", 0, false},
        {"--mpirun-args", ARG_STRING, &extra, "\"ARGS\"", "more mpirun arguments, split at spaces", 0, false},
    };
    const arg_command cmd = {"launch", "--np N [--max-restarts K] [--hostfile FILE] -- train TRAIN_FLAGS",
                             "Runs `mpirun -np N peft train TRAIN_FLAGS` and relaunches a failed job with --resume\n"
                             "from its last checkpoint, up to --max-restarts times (as torchrun does)."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), sep, argv);
    if (rc) return rc;
    char **targs = argv + sep + 1;
    int tn = sep < argc ? argc - sep - 1 : 0;
    if (tn < 1 || strcmp(targs[0], "train") != 0)
        return err_set(PEFT_EUSAGE, "launch: expected `-- train TRAIN_FLAGS` after the launch flags");
    if (np < 1) return err_set(PEFT_EUSAGE, "launch: --np must be at least 1");
    if (max_restarts < 0) return err_set(PEFT_EUSAGE, "launch: --max-restarts must be 0 or positive");
    const char *out = train_flag(tn, targs, "--out");
    if (!out) return err_set(PEFT_EUSAGE, "launch: the train flags need --out (where the checkpoints to resume from are)");

    /* mpirun [--hostfile F] [extra...] -np N /proc/self/exe train ... [--resume] NULL */
    char *words = extra ? strdup(extra) : NULL;
    char **args = calloc((size_t)tn + 64 + (extra ? strlen(extra) : 0), sizeof *args);
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (!args || sl <= 0 || (extra && !words)) {
        free(args);
        free(words);
        return err_set(PEFT_EIO, "launch: cannot find the peft binary");
    }
    self[sl] = 0;
    char npbuf[16];
    snprintf(npbuf, sizeof npbuf, "%d", np);
    int k = 0;
    args[k++] = (char *)mpirun;
    if (hostfile) args[k++] = "--hostfile", args[k++] = (char *)hostfile;
    for (char *w = words ? strtok(words, " ") : NULL; w; w = strtok(NULL, " ")) args[k++] = w;
    args[k++] = "-np";
    args[k++] = npbuf;
    args[k++] = self;
    for (int i = 0; i < tn; i++) args[k++] = targs[i];
    const int resume_slot = k;
    const bool user_resumes = has_flag(tn, targs, "--resume") || has_flag(tn, targs, "--resume-from-checkpoint");

    struct sigaction sa = {0};
    sa.sa_handler = forward;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int status = 0;
    for (int attempt = 0; attempt <= max_restarts; attempt++) {
        int64_t *steps = NULL;
        int n = 0;
        if (attempt > 0 && file_exists(out)) (void)ckpt_list(out, &steps, &n);
        args[resume_slot] = attempt > 0 && n > 0 && !user_resumes ? "--resume" : NULL;
        if (attempt > 0)
            fprintf(stderr, "peft: launch: restart %d of %d%s\n", attempt, max_restarts,
                    n > 0 ? ", resuming from the last checkpoint" : " from the beginning (no checkpoint yet)");
        free(steps);
        status = run_once(args);
        if (status == 0 || stop_signal) break;
        fprintf(stderr, "peft: launch: the job failed (exit status %d)\n", status);
    }
    free(args);
    free(words);
    if (status == 0) return PEFT_OK;
    if (stop_signal) return err_set(PEFT_EIO, "launch: stopped by signal %d (resume with --resume)", (int)stop_signal);
    return err_set(PEFT_EIO, "launch: the job still failed after %d restart%s (exit status %d)", max_restarts,
                   max_restarts == 1 ? "" : "s", status);
}
