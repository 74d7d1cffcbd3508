/* mpi_hosts_check: the probe that tests/mpi/multihost.sh runs on the hosts made by
 * scripts/mpi_hosts.sh. Every rank reports where it runs and then the ranks talk:
 *   rank 0 prints one line per rank: "rank R host H addr A" (A: the IPv4 address of eth0, or "-"),
 *   MPI_Allreduce sums rank + 1 over all ranks:  "sum S want W"  (W = n (n + 1) / 2),
 *   a 1 MiB buffer goes once around the ring of ranks (above the TCP transport's eager limit, so the
 *   rendezvous protocol runs too) and every element is checked: "ring ok" or "ring bad ...".
 * Exit 0 only when the sum and the ring were right on every rank; 1 otherwise.
 * With --canary, rank 0 also reads one element past the end of a heap block and leaks the block: the
 * two errors tests/mpi/valgrind.sh requires valgrind to report, so that its clean runs mean something. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { NAME_LEN = 64, RING_WORDS = 256 * 1024 };

/* the IPv4 address of eth0 in this network namespace, or "-" */
static void eth0_address(char out[NAME_LEN]) {
    struct ifaddrs *list = NULL;
    snprintf(out, NAME_LEN, "-");
    if (getifaddrs(&list) != 0) return;
    for (struct ifaddrs *a = list; a; a = a->ifa_next) {
        if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET && strcmp(a->ifa_name, "eth0") == 0) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, out, NAME_LEN);
            break;
        }
    }
    freeifaddrs(list);
}

/* a value no other rank or position produces: which rank filled position i */
static uint32_t ring_word(int rank, int i) { return (uint32_t)rank * 0x9E3779B1u ^ (uint32_t)i; }

/* one invalid read and one definitely lost block, sized at run time so the compiler cannot see them */
static int canary(int words) {
    int *block = malloc((size_t)words * sizeof *block);
    if (!block) return 0;
    for (int i = 0; i < words; i++) block[i] = i;
    return ((volatile int *)block)[words];
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, n = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    if (argc > 1 && strcmp(argv[1], "--canary") == 0 && rank == 0) printf("canary %d\n", canary(n + 3) != 0);

    char me[2][NAME_LEN] = {{0}};
    if (gethostname(me[0], NAME_LEN - 1) != 0) snprintf(me[0], NAME_LEN, "?");
    eth0_address(me[1]);
    char *all = rank == 0 ? calloc((size_t)n, sizeof me) : NULL;
    if (rank == 0 && !all) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Gather(me, (int)sizeof me, MPI_CHAR, all, (int)sizeof me, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        for (int r = 0; r < n; r++) {
            const char *host = all + (size_t)r * sizeof me;
            printf("rank %d host %s addr %s\n", r, host, host + NAME_LEN);
        }
        free(all);
    }

    long mine = rank + 1, sum = 0, want = (long)n * (n + 1) / 2;
    MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);

    uint32_t *out = malloc(RING_WORDS * sizeof *out), *in = malloc(RING_WORDS * sizeof *in);
    if (!out || !in) MPI_Abort(MPI_COMM_WORLD, 1);
    for (int i = 0; i < RING_WORDS; i++) out[i] = ring_word(rank, i);
    int left = (rank + n - 1) % n, right = (rank + 1) % n;
    MPI_Sendrecv(out, RING_WORDS, MPI_UINT32_T, right, 7, in, RING_WORDS, MPI_UINT32_T, left, 7, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    int bad = 0;
    for (int i = 0; i < RING_WORDS; i++) bad += in[i] != ring_word(left, i);
    free(out);
    free(in);

    int ok = sum == want && bad == 0, all_ok = 0, all_bad = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    MPI_Reduce(&bad, &all_bad, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("sum %ld want %ld\n", sum, want);
        if (all_bad == 0) printf("ring ok\n");
        else printf("ring bad: %d of %d words wrong\n", all_bad, n * RING_WORDS);
        fflush(stdout);
    }
    MPI_Finalize();
    return all_ok ? 0 : 1;
}
