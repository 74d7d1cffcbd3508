/* ckpt_params RUN_DIR [STEP]: prints the flat parameters of a checkpoint (default: the latest), one
 * "%.9g" value per line, padding left out - for the MPI tests to compare runs. Exit 1 on error. */
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "store/checkpoint.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ckpt_params RUN_DIR [STEP]\n");
        return 2;
    }
    ckpt_loaded c;
    if (ckpt_load(argv[1], argc > 2 ? atoll(argv[2]) : -1, &c)) {
        fprintf(stderr, "ckpt_params: %s\n", err_msg());
        return 1;
    }
    printf("# step %lld\n", (long long)c.step);
    for (int k = 0; k < c.table.n; k++) {
        const tt_entry *e = &c.table.e[k];
        for (size_t i = 0; i < e->numel; i++) printf("%.9g\n", c.params[e->offset + i]);
    }
    ckpt_loaded_free(&c);
    return 0;
}
