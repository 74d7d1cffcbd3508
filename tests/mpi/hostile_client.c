/*
 * hostile_client MODE: rank 1 of `mpirun -np 1 peft train ... : -np 1 hostile_client MODE`, where
 * rank 0 is a parameter server waiting for one worker. It misbehaves in one way and prints what the
 * server answered (an Error frame) as "server said: ...". Modes:
 *   garbage     random bytes instead of a frame
 *   truncated   a frame whose header claims more bytes than were sent
 *   selfhash    a hello whose tensor table does not match its own hash
 *   range       a valid hello, then a push for a range the server does not own
 *   future      a valid hello, then a push computed on a version the server has not reached
 * The test (tests/mpi/train_mpi.sh) checks the server's one-line error and that nothing crashed.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/ps.h"
#include "transport.h"
#include "wire.h"

static void send_frame(const uint8_t *buf, size_t len) { MPI_Send(buf, (int)len, MPI_BYTE, 0, TAG_REQUEST, MPI_COMM_WORLD); }

static void send_env(wire_envelope *env, const float *payload, size_t n) {
    wire_buf b = {0};
    if (wire_encode(env, payload, n, &b)) exit(3);
    send_frame(b.data, b.len);
    wire_buf_free(&b);
}

/* Waits (up to 20 s) for the server's reply and prints it. */
static void print_reply(void) {
    for (int i = 0; i < 20000; i++) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(0, TAG_REPLY, MPI_COMM_WORLD, &flag, &st);
        if (flag) {
            int n;
            MPI_Get_count(&st, MPI_BYTE, &n);
            uint8_t *buf = malloc((size_t)n);
            MPI_Recv(buf, n, MPI_BYTE, 0, TAG_REPLY, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            wire_msg m;
            if (wire_decode(buf, (size_t)n, "server", &m) == 0) {
                if (m.env->body_case == PEFT__WIRE__ENVELOPE__BODY_ERROR) printf("server said: %s\n", m.env->error->message);
                else printf("server sent %s\n", wire_kind_name(m.env->body_case));
                fflush(stdout);
                int err = m.env->body_case == PEFT__WIRE__ENVELOPE__BODY_ERROR;
                wire_msg_free(&m);
                free(buf);
                if (err) return;
                continue;
            }
            free(buf);
        }
        transport_backoff(6);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const char *mode = argc > 1 ? argv[1] : "garbage";
    tensor_table t = {0};
    tt_add(&t, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", 2, (int64_t[]){8, 64}, true, NULL);
    float *params = calloc(t.total, sizeof(float));
    uint8_t *table;
    size_t table_len;
    tt_serialize(&t, &table, &table_len);
    if (!strcmp(mode, "garbage")) {
        uint8_t junk[300];
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 37 + 11);
        send_frame(junk, sizeof junk);
    } else if (!strcmp(mode, "truncated")) {
        uint8_t f[12] = {'P', 'F', 'T', 'W', 200, 0, 0, 0, 1, 2, 3, 4};
        send_frame(f, sizeof f);
    } else {
        Peft__Wire__Hello h = PEFT__WIRE__HELLO__INIT;
        h.protocol_version = PEFT_WIRE_VERSION;
        h.table_hash = tt_hash(&t) ^ (!strcmp(mode, "selfhash") ? 1u : 0u);
        h.total = t.total;
        h.worker_index = 0;
        h.num_workers = 1;
        h.host = "hostile";
        h.table.data = table;
        h.table.len = table_len;
        h.config_json = "{}";
        h.total_steps = 3;
        wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
        env.body_case = PEFT__WIRE__ENVELOPE__BODY_HELLO;
        env.hello = &h;
        send_env(&env, params, t.total);
        if (strcmp(mode, "selfhash") != 0) {
            Peft__Wire__Push p = PEFT__WIRE__PUSH__INIT;
            p.version = !strcmp(mode, "future") ? 7 : 0;
            p.offset = !strcmp(mode, "range") ? 16 : 0;
            p.count = t.total;
            p.tokens = 10;
            env.body_case = PEFT__WIRE__ENVELOPE__BODY_PUSH;
            env.push = &p;
            send_env(&env, params, t.total);
        }
    }
    print_reply();
    free(table);
    free(params);
    tt_free(&t);
    MPI_Finalize();
    return 0;
}
