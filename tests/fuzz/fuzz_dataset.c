/*
 * fuzz_dataset.c - libFuzzer target for a dataset's records and manifest (common/data/).
 *
 * Input: byte 0 chooses what the rest is.
 *   even: a stored record (layout in dataset.h) read with seq_len = 1 + byte 1; decoded by
 *         dataset_record_decode(), exactly as dataset_read() decodes a value from the memory map.
 *         An accepted record must re-encode to the same bytes.
 *   odd:  the text of a manifest.json, checked by dataset_manifest_parse() (dataset_open's parser).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/dataset_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    if (data[0] & 1) {
        dataset_info info;
        if (dataset_manifest_parse("manifest.json", (const char *)data + 1, size - 1, &info) == 0 &&
            (info.seq_len <= 0 || info.num_shards <= 0))
            abort();
        return 0;
    }
    int seq_len = 1 + data[1];
    const uint8_t *rec = data + 2;
    size_t len = size - 2;
    int32_t ids[256];
    uint8_t mask[256];
    int n = -1;
    if (dataset_record_decode(rec, len, seq_len, ids, mask, &n, "shard-00000.lmdb", 0) != 0) return 0;
    if (n < 1 || n > seq_len) abort();
    uint32_t loss = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || mask[i] > 1) abort();
        loss += mask[i];
    }
    uint8_t *again = malloc(DATASET_RECORD_HEADER + 5 * (size_t)n);
    if (!again) abort();
    size_t m = dataset_record_encode(again, ids, mask, n, loss);
    /* bytes 5..7 (version high byte, flags) are not part of what a record means */
    if (m != len || memcmp(again, rec, 5) || memcmp(again + 8, rec + 8, m - 8)) abort();
    free(again);
    return 0;
}
