/*
 * fuzz_checkpoint.c - libFuzzer target for the checkpoint store's record decoders
 * (common/store/checkpoint.c: keys, record headers, "latest", the tensor table of
 * common/train/tensor_table.c, float arrays, the run configuration).
 *
 * Input: a list of key/value records as the store holds them, each encoded as
 *     u8 key length, key bytes, u32 little-endian value length, value bytes
 * (a truncated last record is dropped). ckpt_decode_records() decodes the checkpoint "latest"
 * names with ckpt_load()'s checks; an accepted checkpoint must have a tensor table whose entries
 * lie inside the flat buffers it sized; its run state (run_state.h) and run configuration go through
 * the decoders that resume and eval --run use.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "peft/peft_config_json.h"
#include "store/checkpoint.h"
#include "train/run_state.h"

#define FUZZ_MAX_RECORDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ckpt_record recs[FUZZ_MAX_RECORDS];
    size_t n = 0, at = 0;
    while (n < FUZZ_MAX_RECORDS && at < size) {
        size_t kl = data[at++];
        if (size - at < kl + 4) break;
        recs[n].key = data + at;
        recs[n].key_len = kl;
        at += kl;
        size_t vl = (size_t)data[at] | (size_t)data[at + 1] << 8 | (size_t)data[at + 2] << 16 |
                    (size_t)data[at + 3] << 24;
        at += 4;
        if (size - at < vl) break;
        recs[n].value = data + at;
        recs[n].value_len = vl;
        at += vl;
        n++;
    }
    ckpt_loaded c;
    if (ckpt_decode_records("checkpoints.lmdb", recs, n, &c) != 0) return 0;
    size_t end = 0;
    for (int i = 0; i < c.table.n; i++) {
        const tt_entry *e = &c.table.e[i];
        if (e->offset < end || e->numel > c.table.total || e->offset > c.table.total - e->numel) abort();
        end = e->offset + e->numel;
    }
    for (size_t i = 0; i < c.table.total; i++) (void)c.params[i]; /* ASan: the buffer has `total` floats */
    run_state rs; /* the trainer's state record, as resume and inspect read it */
    if (c.state_len && run_state_decode(c.state, c.state_len, "state", &rs) == 0) {
        worker_state ws;
        for (int i = 0; i < rs.workers; i++)
            if (worker_state_decode(rs.blobs + (size_t)i * WORKER_STATE_BYTES, WORKER_STATE_BYTES, "worker", &ws)) abort();
        run_state_free(&rs);
    }
    cJSON *cfg = cJSON_Parse(c.config_json);
    peft_config pc;
    if (cfg) (void)peft_config_from_json(cfg, "run configuration", &pc);
    cJSON_Delete(cfg);
    ckpt_loaded_free(&c);
    return 0;
}
