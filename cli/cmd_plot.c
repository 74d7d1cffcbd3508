/* cmd_plot.c - `peft plot RUN_DIR`: a PNG of a run's losses, learning rate and throughput, drawn by
 * gnuplot (found on PATH) from RUN_DIR/metrics.jsonl. The data and the script go to a temporary
 * directory that is removed afterwards; the PNG is copied into place only when gnuplot succeeded. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "metrics.h"

extern char **environ;

static const char *tmp_files[] = {"train.dat", "val.dat", "plot.gp", "gnuplot.log", "plot.png"};

typedef struct plot_tmp {
    char dir[4096];
    char path[5][4200]; /* tmp_files, in that order */
} plot_tmp;

static int tmp_create(plot_tmp *t) {
    const char *base = getenv("TMPDIR");
    snprintf(t->dir, sizeof t->dir, "%s/peft-plot-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(t->dir)) return err_set(PEFT_EIO, "%s: cannot create a temporary directory: %s", t->dir, strerror(errno));
    for (int i = 0; i < 5; i++) PEFT_TRY(file_join(t->path[i], sizeof t->path[i], t->dir, tmp_files[i]));
    return PEFT_OK;
}

static void tmp_remove(plot_tmp *t) {
    if (!t->dir[0]) return;
    for (int i = 0; i < 5; i++) unlink(t->path[i]);
    rmdir(t->dir);
}

/* `s` as a gnuplot single-quoted string (a quote is doubled). */
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static void put_value(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, " %.9g", v);
    else fputs(" ?", f);
}

/* train.dat: step loss learning_rate tokens_per_second skipped; val.dat: step val_loss. */
static int write_data(const plot_tmp *t, const metrics_log *log, size_t *nval) {
    FILE *tr = fopen(t->path[0], "w"), *va = fopen(t->path[1], "w");
    *nval = 0;
    for (size_t i = 0; tr && va && i < log->n; i++) {
        const metrics_row *r = &log->rows[i];
        fprintf(tr, "%ld", r->step);
        put_value(tr, r->loss);
        put_value(tr, r->learning_rate);
        put_value(tr, r->tokens_per_second);
        fprintf(tr, " %d\n", r->skipped ? 1 : 0);
        if (isfinite(r->val_loss)) {
            fprintf(va, "%ld %.9g\n", r->step, r->val_loss);
            (*nval)++;
        }
    }
    int bad = !tr || !va || ferror(tr) || ferror(va);
    if (tr && fclose(tr)) bad = 1;
    if (va && fclose(va)) bad = 1;
    return bad ? err_set(PEFT_EIO, "%s: cannot write the plot data", t->dir) : PEFT_OK;
}

static int write_script(const plot_tmp *t, const metrics_log *log, size_t nval, const char *title) {
    FILE *f = fopen(t->path[2], "w");
    if (!f) return err_set(PEFT_EIO, "%s: cannot open for writing", t->path[2]);
    long first = log->rows[0].step, last = log->rows[log->n - 1].step;
    bool any_skipped = false;
    for (size_t i = 0; i < log->n; i++) any_skipped |= log->rows[i].skipped;
    /* a few points are drawn as points too, so that a short run shows something */
    const char *style = log->n <= 60 ? "linespoints pt 7 ps 0.6" : "lines";
    fputs("set terminal pngcairo size 1000,1000 noenhanced font 'sans,11'\nset output ", f);
    put_quoted(f, t->path[4]);
    fputs("\nset datafile missing '?'\nset multiplot layout 3,1 title ", f);
    put_quoted(f, title);
    fputs(" font 'sans,13'", f);
    /* a margin of 2% on both sides keeps the first and last points off the frame */
    double pad = first < last ? 0.02 * (double)(last - first) : 1.0;
    fprintf(f, "\nset grid\nset key top right box opaque\nset xlabel 'step'\nset xrange [%g:%g]\n", (double)first - pad,
            (double)last + pad);
    fputs("set ylabel 'loss (mean cross-entropy per token)'\nplot ", f);
    put_quoted(f, t->path[0]);
    fprintf(f, " using 1:2 with %s lw 2 lc rgb '#1f77b4' title 'training loss'", style);
    if (nval) {
        fputs(", ", f);
        put_quoted(f, t->path[1]);
        fputs(" using 1:2 with linespoints lw 2 pt 7 ps 1 lc rgb '#d62728' title 'validation loss'", f);
    }
    if (any_skipped) {
        fputs(", ", f);
        put_quoted(f, t->path[0]);
        fputs(" using 1:($5 > 0 ? $2 : 1/0) with points pt 2 ps 1.5 lc rgb 'black' title 'skipped step'", f);
    }
    fputs("\nset ylabel 'learning rate'\nset format y '%.2g'\nplot ", f);
    put_quoted(f, t->path[0]);
    fprintf(f, " using 1:3 with %s lw 2 lc rgb '#2ca02c' title 'learning rate'\n", style);
    fputs("set ylabel 'tokens per second'\nset format y '%g'\nset yrange [0:*]\nset key bottom right\nplot ", f);
    put_quoted(f, t->path[0]);
    fprintf(f, " using 1:4 with %s lw 2 lc rgb '#9467bd' title 'throughput (mean since the start)'\n", style);
    fputs("unset multiplot\n", f);
    int bad = ferror(f);
    if (fclose(f) || bad) return err_set(PEFT_EIO, "%s: cannot write", t->path[2]);
    return PEFT_OK;
}

/* The first line gnuplot wrote, for the error message. */
static void first_log_line(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(buf, (int)cap, f) && strspn(buf, " \t\r\n") == strlen(buf)) buf[0] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    fclose(f);
}

static int run_gnuplot(const plot_tmp *t) {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa)) return err_set(PEFT_ENOMEM, "plot: out of memory");
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, t->path[3], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    char *argv[] = {"gnuplot", "--default-settings", (char *)t->path[2], NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e == ENOENT)
        return err_set(PEFT_EUNSUPPORTED, "plot: gnuplot not found on PATH (Debian: apt-get install gnuplot-nox)");
    if (e) return err_set(PEFT_EIO, "plot: cannot start gnuplot: %s", strerror(e));
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return err_set(PEFT_EINTERNAL, "plot: waiting for gnuplot: %s", strerror(errno));
    char msg[512];
    first_log_line(t->path[3], msg, sizeof msg);
    if (WIFSIGNALED(status)) return err_set(PEFT_EIO, "plot: gnuplot died of signal %d", WTERMSIG(status));
    if (WEXITSTATUS(status) == 127 && !msg[0])
        return err_set(PEFT_EUNSUPPORTED, "plot: gnuplot not found on PATH (Debian: apt-get install gnuplot-nox)");
    if (WEXITSTATUS(status))
        return err_set(PEFT_EIO, "plot: gnuplot failed (exit %d): %s", WEXITSTATUS(status), msg[0] ? msg : "no message");
    struct stat st;
    if (stat(t->path[4], &st) || st.st_size == 0)
        return err_set(PEFT_EIO, "plot: gnuplot wrote no image%s%s", msg[0] ? ": " : "", msg);
    return PEFT_OK;
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL;
    arg_spec specs[] = {
        {"--out", ARG_STRING, &out, "FILE.png", "image to write (default RUN_DIR/metrics.png)", 0, false},
    };
    const arg_command cmd = {"plot", "RUN_DIR [--out FILE.png]",
                             "Draws RUN_DIR/metrics.jsonl as a PNG with gnuplot: training and validation loss,\n"
                             "learning rate and throughput against the step."};
    const int nspecs = (int)(sizeof specs / sizeof specs[0]);
    const char *run = NULL;
    if (argc >= 1 && argv[0][0] != '-') {
        run = argv[0];
        argc--;
        argv++;
    }
    int rc = args_parse(&cmd, specs, nspecs, argc, argv);
    if (rc) return rc;
    if (!run) return err_set(PEFT_EUSAGE, "plot: expected RUN_DIR first (see peft plot --help)");
    if (!file_is_dir(run)) return err_set(PEFT_EIO, "%s: no such directory", run);
    char metrics_path[4200], default_out[4200];
    PEFT_TRY(file_join(metrics_path, sizeof metrics_path, run, "metrics.jsonl"));
    PEFT_TRY(file_join(default_out, sizeof default_out, run, "metrics.png"));
    if (!out) out = default_out;

    char title[4300];
    snprintf(title, sizeof title, "peft run %s", run);
    metrics_log log;
    PEFT_TRY(metrics_read(metrics_path, &log));
    plot_tmp t = {0};
    size_t nval = 0;
    if (!(rc = tmp_create(&t)) && !(rc = write_data(&t, &log, &nval)) && !(rc = write_script(&t, &log, nval, title)) &&
        !(rc = run_gnuplot(&t)))
        rc = file_copy(t.path[4], out);
    if (rc == PEFT_OK) {
        const metrics_row *last = &log.rows[log.n - 1];
        printf("wrote %s: %zu logged steps (%ld..%ld), last training loss %.4f", out, log.n, log.rows[0].step,
               last->step, last->loss);
        for (size_t i = log.n; i-- > 0;)
            if (isfinite(log.rows[i].val_loss)) {
                printf(", validation loss %.4f at step %ld", log.rows[i].val_loss, log.rows[i].step);
                break;
            }
        printf("\n");
    }
    tmp_remove(&t);
    metrics_free(&log);
    return rc;
}
